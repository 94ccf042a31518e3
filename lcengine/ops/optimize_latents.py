# SPDX-License-Identifier: Apache-2.0
"""optimize_latents: the fused critic-gradient latent optimizer (many Adam steps per call).

Backends: ``eager`` runs :func:`lcengine.reference.optimize_latents_ref` (the autograd loop);
``native`` on CPU runs the whole loop in C++ (``_C.optimize_latents_cpu``), with its GEMMs on the
``sgemm_`` that torch's own CPU library exports (MKL), found at run time through ctypes so that
``_C`` links neither BLAS nor libtorch. The fused Triton and CUDA optimizers are not built yet:
asking for them explicitly raises; ``auto`` uses native on CPU and eager elsewhere.

The native path reads the critics' weights directly, so they must follow the contract of
``lcengine.method.critics``: an ``nn.ModuleList`` ``layers`` of ``nn.Linear`` with the string
``activation`` ("relu" | "softplus" | "leaky_relu", slope 0.2) between them, the realism critic's
optional ``y_embedding`` concatenated after ``z``, and attribute critics either such an MLP or a
stack of them (``critics``, logits concatenated in order).
"""
from __future__ import annotations

import ctypes
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from ..backend import requested_backend, resolve_backend
from ..reference import optimize_latents_ref
from ._common import check_int, check_positive_float, native_fn

ACTIVATION_CODES = {"relu": 0, "softplus": 1, "leaky_relu": 2}

# Knobs of the native CPU path, for benchmarks and experiments (0 = automatic).
NATIVE_TUNING = {"tile_rows": 0, "threads": 0}

_warned: set[str] = set()
_blas_cache: dict[str, Any] = {}


@dataclass
class OptimizeResult:
    """What :func:`optimize_latents` returns.

    Attributes:
        latents: final latents (the first satisfied point for converged rows); float32 (float64
            when z_start is float64, eager only). # [B, D]
        converged: whether the row met the stopping rule within the step limit. # [B] bool
        steps: Adam updates applied to the row (0 if its start already satisfied). # [B] int64
        realism_prob: ``sigmoid(D(z, y))`` at the final latents. # [B]
        attribute_prob: ``sigmoid(D_attr(z))`` at the final latents. # [B, A]
    """

    latents: torch.Tensor
    converged: torch.Tensor
    steps: torch.Tensor
    realism_prob: torch.Tensor
    attribute_prob: torch.Tensor


# ---------------------------------------------------------------------------------------------
# BLAS discovery: torch's CPU library exports MKL's Fortran sgemm_.
# ---------------------------------------------------------------------------------------------

def _torch_cpu_library() -> str:
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"):
        path = os.path.join(lib_dir, name)
        if os.path.exists(path):
            return path
    raise OSError(f"no torch_cpu library under {lib_dir}")


def _check_sgemm(fn) -> None:
    """A 2x3 @ 3x2 product through ``fn`` must match: catches an ILP64 or broken export."""
    c_int, c_float, fp = ctypes.c_int, ctypes.c_float, ctypes.POINTER(ctypes.c_float)
    fn.restype = None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p] + [ctypes.POINTER(c_int)] * 3 + [
        fp, fp, ctypes.POINTER(c_int), fp, ctypes.POINTER(c_int), fp, fp, ctypes.POINTER(c_int)]
    a = (c_float * 6)(1, 2, 3, 4, 5, 6)  # column-major 2x3
    b = (c_float * 6)(1, 0, -1, 2, 1, 0)  # column-major 3x2
    c = (c_float * 4)(0, 0, 0, 0)
    m, n, k = c_int(2), c_int(2), c_int(3)
    lda, ldb, ldc = c_int(2), c_int(3), c_int(2)
    one, zero = c_float(1.0), c_float(0.0)
    fn(b"N", b"N", ctypes.byref(m), ctypes.byref(n), ctypes.byref(k), ctypes.byref(one), a,
       ctypes.byref(lda), b, ctypes.byref(ldb), ctypes.byref(zero), c, ctypes.byref(ldc))
    expected = [1 - 5, 2 - 6, 2 + 3, 4 + 4]  # A @ B, column-major
    if [round(v, 4) for v in c] != expected:
        raise OSError(f"sgemm_ self-test gave {list(c)}, expected {expected}")


def blas_functions() -> tuple[int, int]:
    """Addresses of ``sgemm_`` and (0 if absent) ``MKL_Set_Num_Threads_Local`` in torch's CPU
    library. Raises ``RuntimeError`` with the reason when there is no usable sgemm_."""
    if "result" not in _blas_cache:
        try:
            lib = ctypes.CDLL(_torch_cpu_library())
            sgemm = lib.sgemm_
            _check_sgemm(sgemm)
            try:
                # The C entry point (int by value). The lower-case symbol of the same name is the
                # Fortran one (int by reference): in mkl_service.h it is a macro for this.
                set_local = ctypes.cast(lib.MKL_Set_Num_Threads_Local, ctypes.c_void_p).value or 0
            except AttributeError:
                set_local = 0
            _blas_cache["result"] = (ctypes.cast(sgemm, ctypes.c_void_p).value, set_local)
            _blas_cache["error"] = None
        except (OSError, AttributeError) as exc:
            _blas_cache["result"] = None
            _blas_cache["error"] = f"{type(exc).__name__}: {exc}"
    if _blas_cache["result"] is None:
        raise RuntimeError("the native latent optimizer needs the BLAS sgemm_ exported by torch's "
                           f"CPU library, which was not usable ({_blas_cache['error']})")
    return _blas_cache["result"]


# ---------------------------------------------------------------------------------------------
# Critic structure (what the native path reads).
# ---------------------------------------------------------------------------------------------

@dataclass
class _Net:
    activation: str
    layers: list  # [(weight [out, in], bias [out] or None)]


def _mlp(module: Any, name: str) -> _Net:
    layers = getattr(module, "layers", None)
    if not isinstance(layers, (nn.ModuleList, list, tuple)) or len(layers) == 0:
        raise TypeError(f"{name} must hold its layers in a non-empty nn.ModuleList `layers` of "
                        f"nn.Linear (the lcengine.method.critics contract), got "
                        f"{type(layers).__name__}")
    for i, layer in enumerate(layers):
        if type(layer) is not nn.Linear:
            raise TypeError(f"{name}.layers[{i}] is {type(layer).__name__}; the fused optimizer "
                            "supports nn.Linear layers only")
    activation = getattr(module, "activation", None)
    if activation not in ACTIVATION_CODES:
        raise ValueError(f"{name}.activation must be one of {tuple(ACTIVATION_CODES)}, got "
                         f"{activation!r}")
    if len(layers) < 2:
        raise ValueError(f"{name} has a single Linear layer; the fused optimizer needs at least "
                         "one hidden layer")
    for i in range(1, len(layers)):
        if layers[i].in_features != layers[i - 1].out_features:
            raise ValueError(f"{name}.layers[{i}] reads {layers[i].in_features} features but "
                             f"layers[{i - 1}] gives {layers[i - 1].out_features}")
    return _Net(activation, [(layer.weight, layer.bias) for layer in layers])


def _attribute_nets(critic: Any) -> list[_Net]:
    subs = getattr(critic, "critics", None)
    if subs is not None and getattr(critic, "layers", None) is None:
        return [_mlp(c, f"attribute_critic.critics[{i}]") for i, c in enumerate(subs)]
    return [_mlp(critic, "attribute_critic")]


def _structure(realism_critic: Any, attribute_critic: Any, dim: int, num_attr: int,
               realism_attributes: int) -> tuple[_Net, Optional[nn.Linear], list[_Net]]:
    """Parses both critics and checks every width against D, A and realism_attributes."""
    real = _mlp(realism_critic, "realism_critic")
    emb = getattr(realism_critic, "y_embedding", None)
    if emb is not None and type(emb) is not nn.Linear:
        raise TypeError(f"realism_critic.y_embedding must be an nn.Linear, got "
                        f"{type(emb).__name__}")
    embed = emb.out_features if emb is not None else 0
    if real.layers[0][0].shape[1] != dim + embed:
        extra = f" plus a {embed}-wide y embedding" if embed else ""
        raise ValueError(f"realism_critic.layers[0] reads {real.layers[0][0].shape[1]} features "
                         f"but z has D={dim}{extra}")
    if emb is not None and emb.in_features != realism_attributes:
        raise ValueError(f"realism_critic.y_embedding reads {emb.in_features} attributes but "
                         f"realism_attributes is {realism_attributes}")
    if real.layers[-1][0].shape[0] != 1:
        raise ValueError(f"realism_critic must output one logit per row, its last layer gives "
                         f"{real.layers[-1][0].shape[0]}")
    attrs = _attribute_nets(attribute_critic)
    for i, net in enumerate(attrs):
        if net.layers[0][0].shape[1] != dim:
            raise ValueError(f"attribute critic {i} reads {net.layers[0][0].shape[1]} features "
                             f"but z has D={dim}")
    outputs = sum(net.layers[-1][0].shape[0] for net in attrs)
    if outputs != num_attr:
        raise ValueError(f"attribute_critic outputs {outputs} logits but y has A={num_attr} "
                         "columns")
    return real, emb, attrs


def _params(real: _Net, emb: Optional[nn.Linear], attrs: list[_Net]) -> list[torch.Tensor]:
    out = [t for net in [real] + attrs for w, b in net.layers for t in (w, b) if t is not None]
    if emb is not None:
        out += [t for t in (emb.weight, emb.bias) if t is not None]
    return out


def _native_unsupported(real, emb, attrs, device: torch.device) -> Optional[str]:
    """Why the native path cannot take these critics (None if it can)."""
    if device.type != "cpu":
        return f"the fused CUDA optimizer is not built yet (z_start is on {device})"
    for p in _params(real, emb, attrs):
        if p.dtype != torch.float32:
            return f"critic weights must be float32 for the native optimizer, got {p.dtype}"
        if p.device.type != "cpu":
            return f"critic weights are on {p.device}, z_start on cpu"
    try:
        blas_functions()
    except RuntimeError as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------------------------

def _check_unit(name: str, v, *, low: float, low_open: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise TypeError(f"{name} must be a float, got {v!r}")
    v = float(v)
    ok_low = v > low if low_open else v >= low
    if not (ok_low and v < 1.0):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, 1), got {v}")
    return v


def _check_inputs(z_start, y, mask, sigma_bar):
    if not isinstance(z_start, torch.Tensor):
        raise TypeError(f"z_start must be a torch.Tensor [B, D], got {type(z_start).__name__}")
    if z_start.dim() != 2 or z_start.shape[1] < 1:
        raise ValueError(f"z_start must have shape [B, D] with D >= 1, got {list(z_start.shape)}")
    if not z_start.is_floating_point():
        raise TypeError(f"z_start must be a floating tensor, got {z_start.dtype}")
    b, d = z_start.shape
    if not bool(torch.isfinite(z_start).all()):
        raise ValueError("z_start contains NaN or infinite values")
    for name, t in (("y", y), ("mask", mask)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor [B, A], got {type(t).__name__}")
        if t.dim() != 2 or t.shape[0] != b:
            raise ValueError(f"{name} must have shape [B={b}, A], got {list(t.shape)}")
        if t.device != z_start.device:
            raise ValueError(f"{name} is on {t.device} but z_start is on {z_start.device}")
    if mask.shape != y.shape:
        raise ValueError(f"mask must have the shape of y {list(y.shape)}, got {list(mask.shape)}")
    if y.shape[1] < 1:
        raise ValueError("y must have at least one attribute column (A >= 1)")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    if not (y.is_floating_point() or y.dtype in (torch.bool, torch.int8, torch.uint8, torch.int16,
                                                  torch.int32, torch.int64)):
        raise TypeError(f"y must be a float, integer or bool tensor of 0/1, got {y.dtype}")
    yf = y.to(torch.float64 if z_start.dtype == torch.float64 else torch.float32)  # [B, A]
    if not bool(((yf == 0) | (yf == 1)).all()):
        raise ValueError("y must hold only 0 and 1")
    if isinstance(sigma_bar, torch.Tensor):
        if sigma_bar.dim() > 1 or (sigma_bar.dim() == 1 and sigma_bar.shape[0] not in (1, d)):
            raise ValueError(f"sigma_bar must be a scalar or have shape [D={d}], got "
                             f"{list(sigma_bar.shape)}")
        if sigma_bar.device != z_start.device:
            raise ValueError(f"sigma_bar is on {sigma_bar.device} but z_start is on "
                             f"{z_start.device}")
        sb = sigma_bar.detach().to(torch.float64)
        if not bool((torch.isfinite(sb) & (sb > 0)).all()):
            raise ValueError("sigma_bar must be finite and > 0")
    else:
        check_positive_float("sigma_bar", sigma_bar)
    return yf


def _critic_width(critic, attr: str) -> Optional[int]:
    v = getattr(critic, attr, None)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _warn_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"lcengine.optimize_latents: {reason}; falling back to the eager autograd "
                      "loop", RuntimeWarning, stacklevel=3)


# ---------------------------------------------------------------------------------------------
# Public op.
# ---------------------------------------------------------------------------------------------

def optimize_latents(z_start: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                     realism_critic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                     attribute_critic: Callable[[torch.Tensor], torch.Tensor],
                     sigma_bar: Union[float, torch.Tensor], *, w_realism: float = 1.0,
                     w_attr: float = 1.0, w_dist: float = 0.1, tau_r: float = 0.5,
                     tau_a: float = 0.5, steps: int = 300, lr: float = 0.05,
                     betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                     realism_attributes: Optional[int] = None,
                     backend: Optional[str] = None) -> OptimizeResult:
    """Gradient-based latent optimization against both critics, stopping per row.

    Per step ``t`` (global, for Adam's bias correction) the rows still active evaluate
    ``D(z, y[:, :A_r])`` and ``D_attr(z)``; a row that is satisfied (``sigmoid(D) > tau_r`` and
    every masked attribute on its requested side: ``sigmoid > tau_a`` for a 1, ``< 1 - tau_a``
    for a 0) is frozen there; the others take one Adam step on

        w_realism * BCE(D, 1) + w_attr * sum_a mask_a BCE(D_attr_a, y_a)
        + w_dist * mean_d log(1 + (z - z_start)^2) / sigma_bar^2.

    Rows still active after ``steps`` updates are checked once more. Rows are independent.

    Args:
        z_start: starting latents, also the anchor of the distance penalty. # [B, D]
        y: requested attribute values, 0/1. # [B, A]
        mask: requested attributes (only those enter the attribute loss). # [B, A] bool
        realism_critic: ``D(z, y[:, :realism_attributes]) -> [B]`` logits.
        attribute_critic: ``D_attr(z) -> [B, A]`` logits.
        sigma_bar: scalar or per-dimension scale of the distance penalty (> 0). # [] or [D]
        w_realism, w_attr, w_dist: loss weights (>= 0).
        tau_r: realism probability to exceed, in (0, 1).
        tau_a: confidence each requested attribute needs, in [0.5, 1).
        steps: maximum Adam updates per row (>= 1).
        lr, betas, eps: Adam hyper-parameters (torch.optim.Adam's formula).
        realism_attributes: leading columns of ``y`` the realism critic reads (default: its
            ``num_attributes``, else all); later columns are zero-shot constraints.
        backend: "auto" (native on CPU, eager elsewhere), "eager" or "native" (CPU only).
            "triton" and native on CUDA are not built yet and raise.

    Returns:
        :class:`OptimizeResult` (latents float32).

    Raises:
        TypeError, ValueError: bad inputs or unsupported critic structure (before any work).
        RuntimeError: an explicitly requested backend that cannot run this op.
    """
    yf = _check_inputs(z_start, y, mask, sigma_bar)
    b, d = z_start.shape
    num_attr = y.shape[1]
    steps = check_int("steps", steps, minimum=1)
    w_realism, w_attr, w_dist = (check_positive_float(n, v, allow_zero=True) for n, v in
                                 (("w_realism", w_realism), ("w_attr", w_attr),
                                  ("w_dist", w_dist)))
    tau_r = _check_unit("tau_r", tau_r, low=0.0, low_open=True)
    tau_a = _check_unit("tau_a", tau_a, low=0.5, low_open=False)
    lr = check_positive_float("lr", lr)
    eps = check_positive_float("eps", eps)
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise TypeError(f"betas must be a pair of floats, got {betas!r}")
    beta1, beta2 = (float(v) for v in betas)
    for name, v in (("betas[0]", beta1), ("betas[1]", beta2)):
        if not 0.0 <= v < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {v}")
    if not callable(realism_critic) or not callable(attribute_critic):
        raise TypeError("realism_critic and attribute_critic must be callables (critic modules)")
    if realism_attributes is None:
        realism_attributes = _critic_width(realism_critic, "num_attributes")
        realism_attributes = num_attr if realism_attributes is None else realism_attributes
    realism_attributes = check_int("realism_attributes", realism_attributes, minimum=0,
                                   maximum=num_attr)
    for name, critic in (("realism_critic", realism_critic),
                         ("attribute_critic", attribute_critic)):
        width = _critic_width(critic, "latent_dim")
        if width is not None and width != d:
            raise ValueError(f"{name} reads latents of width {width} but z_start has D={d}")
    attr_width = _critic_width(attribute_critic, "num_attributes")
    if attr_width is not None and attr_width != num_attr:
        raise ValueError(f"attribute_critic gives {attr_width} logits but y has A={num_attr} "
                         "columns")

    requested = requested_backend(backend)
    device = z_start.device
    if requested == "triton":
        raise RuntimeError("optimize_latents: the fused Triton optimizer is not built yet; use "
                           "backend='eager' (or 'native' on CPU)")
    if requested == "native" and device.type != "cpu":
        raise RuntimeError(f"optimize_latents: the fused CUDA optimizer is not built yet "
                           f"(z_start is on {device}); use backend='eager'")

    structure, structure_error = None, None
    try:
        structure = _structure(realism_critic, attribute_critic, d, num_attr, realism_attributes)
    except (TypeError, ValueError) as exc:
        structure_error = exc
    if structure_error is not None and requested == "native":
        raise structure_error
    if isinstance(structure_error, ValueError) and requested == "auto":
        raise structure_error  # critics that claim the contract but break it: say so, not fall back

    chosen = "eager"
    if requested in ("native", "auto") and device.type == "cpu":
        # native, or eager with the usual warning (auto keeps float64 on eager, silently)
        chosen = resolve_backend(requested, device, z_start.dtype)
        if chosen == "native" and z_start.dtype not in (torch.float32, torch.float16,
                                                         torch.bfloat16):
            raise TypeError(f"z_start has dtype {z_start.dtype}, which the native optimizer does "
                            "not support; use backend='eager' for float64")
        if chosen == "native":
            reason = (f"unsupported critic structure ({structure_error})" if structure is None
                      else _native_unsupported(*structure, device))
            if reason is not None:
                if requested == "native":
                    raise RuntimeError(f"optimize_latents: backend 'native' cannot run: {reason}")
                _warn_once(reason)
                chosen = "eager"
    elif requested == "auto":
        _warn_once(f"no fused optimizer for {device.type} tensors yet (Triton/CUDA not built)")

    if b == 0:
        return OptimizeResult(torch.zeros(0, d, device=device),
                              torch.zeros(0, dtype=torch.bool, device=device),
                              torch.zeros(0, dtype=torch.int64, device=device),
                              torch.zeros(0, device=device),
                              torch.zeros(0, num_attr, device=device))
    if chosen == "eager":
        z, conv, st, rp, ap = optimize_latents_ref(
            z_start, yf, mask, realism_critic, attribute_critic, sigma_bar, w_realism=w_realism,
            w_attr=w_attr, w_dist=w_dist, tau_r=tau_r, tau_a=tau_a, steps=steps, lr=lr,
            betas=(beta1, beta2), eps=eps, realism_attributes=realism_attributes)
        return OptimizeResult(z, conv, st, rp, ap)
    return _optimize_native(z_start, yf, mask, structure, sigma_bar, w_realism, w_attr, w_dist,
                            tau_r, tau_a, steps, lr, beta1, beta2, eps, realism_attributes)


@torch.no_grad()
def _optimize_native(z_start, yf, mask, structure, sigma_bar, w_realism, w_attr, w_dist, tau_r,
                     tau_a, steps, lr, beta1, beta2, eps, realism_attributes) -> OptimizeResult:
    real, emb, attrs = structure
    b, d = z_start.shape
    num_attr = yf.shape[1]
    z0 = z_start.detach().to(torch.float32).contiguous()  # [B, D]

    # y is fixed: the realism critic's embedding and its share of layers[0] fold into a per-row
    # first-layer bias, computed once.
    w0, b0 = real.layers[0]  # [H1r, D + E], [H1r]
    row_bias = None
    if emb is not None:
        e = emb(yf[:, :realism_attributes])  # [B, E]
        row_bias = e @ w0[:, d:].t()  # [B, H1r]
        if b0 is not None:
            row_bias = row_bias + b0
        row_bias = row_bias.contiguous()
    nets = [real] + attrs

    def bias_of(w, bias):
        return bias.detach() if bias is not None else torch.zeros(w.shape[0])

    # Every critic's first layer reads the same z: one [H1, D] weight block, one GEMM.
    w_first = torch.cat([w0[:, :d]] + [net.layers[0][0] for net in attrs]).contiguous()  # [H1, D]
    b_first = torch.cat([bias_of(*net.layers[0]) for net in nets]).contiguous()  # [H1]
    keep = [w_first, b_first, row_bias]
    widths, weights, biases, acts = [], [], [], []
    for net in nets:
        widths.append([d] + [w.shape[0] for w, _ in net.layers])
        ws, bs = [0], [0]
        for w, bias in net.layers[1:]:
            wc, bc = w.detach().contiguous(), bias_of(w, bias).contiguous()
            keep += [wc, bc]
            ws.append(wc.data_ptr())
            bs.append(bc.data_ptr())
        weights.append(ws)
        biases.append(bs)
        acts.append(ACTIVATION_CODES[net.activation])

    # Logit columns: 0 = realism (target 1, weight w_r, must exceed tau_r), 1.. = attributes.
    ones = torch.ones(b, 1)  # [B, 1]
    maskf = mask.to(torch.float32)  # [B, A]
    target = torch.cat([ones, yf], 1).contiguous()  # [B, C]
    loss_weight = torch.cat([ones * w_realism, maskf * w_attr], 1).contiguous()  # [B, C]
    side = torch.where(yf > 0.5, 1, -1).to(torch.int8) * mask.to(torch.int8)  # [B, A]
    requirement = torch.cat([torch.ones(b, 1, dtype=torch.int8), side], 1).contiguous()  # [B, C]
    c = num_attr + 1
    upper = torch.tensor([tau_r] + [tau_a] * num_attr, dtype=torch.float32)  # [C]
    lower = torch.tensor([0.0] + [1.0 - tau_a] * num_attr, dtype=torch.float32)  # [C]
    sb = torch.as_tensor(sigma_bar, dtype=torch.float64).detach().cpu().reshape(-1)
    inv_sigma_sq = (1.0 / (sb * sb)).to(torch.float32).expand(d).contiguous()  # [D]

    z_out = torch.empty(b, d)  # [B, D]
    converged = torch.zeros(b, dtype=torch.uint8)  # [B]
    steps_taken = torch.zeros(b, dtype=torch.int64)  # [B]
    logits = torch.empty(b, c)  # [B, C]
    sgemm, set_local = blas_functions()
    native_fn("optimize_latents", z_start.device)(
        acts, widths, weights, biases, w_first.data_ptr(), b_first.data_ptr(), w_first.shape[0],
        0 if row_bias is None else row_bias.data_ptr(),
        0 if row_bias is None else row_bias.shape[1], c, target.data_ptr(),
        loss_weight.data_ptr(), requirement.data_ptr(), upper.data_ptr(), lower.data_ptr(),
        inv_sigma_sq.data_ptr(), float(w_dist), z0.data_ptr(), z_out.data_ptr(),
        converged.data_ptr(), steps_taken.data_ptr(), logits.data_ptr(), b, d, steps, lr, beta1,
        beta2, eps, int(NATIVE_TUNING["tile_rows"]), int(NATIVE_TUNING["threads"]), sgemm,
        set_local)
    del keep
    probs = torch.sigmoid(logits)  # [B, C]
    return OptimizeResult(latents=z_out, converged=converged.to(torch.bool), steps=steps_taken,
                          realism_prob=probs[:, 0].contiguous(),
                          attribute_prob=probs[:, 1:].contiguous())
