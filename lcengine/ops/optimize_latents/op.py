# SPDX-License-Identifier: Apache-2.0
"""The public op ``optimize_latents``: validation, the choice of backend, dispatch.

Backends: ``eager`` runs :func:`lcengine.reference.optimize_latents_ref` (the autograd loop);
``native`` runs the whole loop in C++ on CPU (:mod:`.cpu`) or from C++ on CUDA (:mod:`.cuda`);
``triton`` runs one step as a few ``tl.dot`` kernels with fused epilogues, captured in a CUDA
graph on GPU (:mod:`.triton`). ``auto`` tries ``backend.AUTO_ORDER`` for the device (on CUDA
reordered per call by :func:`_auto_order`), then eager with one warning.

The fused paths read the critics' weights directly, so the critics must follow the contract of
:mod:`.prepare` (:class:`~.prepare.CriticNet`). Critics that do not fall back to the eager loop
under ``auto`` (with one warning) and raise under an explicit fused backend.

Not traceable: the op is no ``torch.library`` op (it runs a whole host-driven loop and reads the
critics' weights), so it is wrapped in ``torch.compiler.disable``. ``torch.compile`` runs it
eagerly at a graph break; ``fullgraph=True`` and strict ``torch.export`` stop with
:data:`NOT_TRACEABLE` as the reason; non-strict ``torch.export`` (and any fake-tensor tracing)
raises ``RuntimeError(NOT_TRACEABLE)`` before looking at the inputs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch

from ...backend import AUTO_ORDER, native_module, requested_backend, unavailable_reason
from ...reference import optimize_latents_ref
from ...validation import check_int, check_positive_float
from .._common import is_tracing
from .config import OptimizeHyperParams, OptimizeTuning, resolve_tuning
from .prepare import Critics, forward_mismatch, parse_critics, prepare

# Critic weight precisions: float32 everywhere; bfloat16 (fp32 latents, Adam state and
# accumulation) on the GPU backends, and on eager as bf16 autocast.
WEIGHT_DTYPES = (torch.float32, torch.bfloat16)

# auto on CUDA, per call (unmeasured on a GPU so far; docs/benchmarks.md): the native CUDA
# optimizer computes in fp32 on CUDA cores, and its persistent row-tile kernel (one launch per
# call) covers widths up to ROW_TILE_MAX_WIDTH; the Triton optimizer's GEMMs run on tensor cores
# (tf32x3, or bf16 with bf16 weights). So native first for narrow fp32 critics on batches up to
# NATIVE_FIRST_MAX_ROWS, Triton first otherwise.
ROW_TILE_MAX_WIDTH = 256
NATIVE_FIRST_MAX_ROWS = 65536

_warned: set[str] = set()

NOT_TRACEABLE = (
    "lcengine.optimize_latents cannot be traced by torch.compile(fullgraph=True) or "
    "torch.export: it is not a torch.library op (it runs a whole multi-step loop driven from the "
    "host and reads the critics' weights); call it outside the compiled or exported code"
)


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
        backend: the backend that ran ("eager", "native" or "triton").
    """

    latents: torch.Tensor
    converged: torch.Tensor
    steps: torch.Tensor
    realism_prob: torch.Tensor
    attribute_prob: torch.Tensor
    backend: str = "eager"


# ---------------------------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------------------------


def _check_inputs(z_start: Any, y: Any, mask: Any, sigma_bar: Any) -> torch.Tensor:
    """Checks the tensors; returns ``y`` as floats (float64 for float64 latents). # [B, A]"""
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
    if not (
        y.is_floating_point()
        or y.dtype in (torch.bool, torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)
    ):
        raise TypeError(f"y must be a float, integer or bool tensor of 0/1, got {y.dtype}")
    yf = y.to(torch.float64 if z_start.dtype == torch.float64 else torch.float32)  # [B, A]
    if not bool(((yf == 0) | (yf == 1)).all()):
        raise ValueError("y must hold only 0 and 1")
    if isinstance(sigma_bar, torch.Tensor):
        if sigma_bar.dim() > 1 or (sigma_bar.dim() == 1 and sigma_bar.shape[0] not in (1, d)):
            raise ValueError(
                f"sigma_bar must be a scalar or have shape [D={d}], got {list(sigma_bar.shape)}"
            )
        if sigma_bar.device != z_start.device:
            raise ValueError(
                f"sigma_bar is on {sigma_bar.device} but z_start is on {z_start.device}"
            )
        sb = sigma_bar.detach().to(torch.float64)
        if not bool((torch.isfinite(sb) & (sb > 0)).all()):
            raise ValueError("sigma_bar must be finite and > 0")
    else:
        check_positive_float("sigma_bar", sigma_bar)
    return yf


def _critic_width(critic: Any, attr: str) -> Optional[int]:
    v = getattr(critic, attr, None)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _check_critics(
    realism_critic: Any,
    attribute_critic: Any,
    d: int,
    num_attr: int,
    realism_attributes: Optional[int],
) -> int:
    """Checks the critics' declared widths; returns ``realism_attributes`` resolved."""
    if not callable(realism_critic) or not callable(attribute_critic):
        raise TypeError("realism_critic and attribute_critic must be callables (critic modules)")
    if realism_attributes is None:
        realism_attributes = _critic_width(realism_critic, "num_attributes")
        realism_attributes = num_attr if realism_attributes is None else realism_attributes
    realism_attributes = check_int(
        "realism_attributes", realism_attributes, minimum=0, maximum=num_attr
    )
    for name, critic in (
        ("realism_critic", realism_critic),
        ("attribute_critic", attribute_critic),
    ):
        width = _critic_width(critic, "latent_dim")
        if width is not None and width != d:
            raise ValueError(f"{name} reads latents of width {width} but z_start has D={d}")
    attr_width = _critic_width(attribute_critic, "num_attributes")
    if attr_width is not None and attr_width != num_attr:
        raise ValueError(
            f"attribute_critic gives {attr_width} logits but y has A={num_attr} columns"
        )
    return realism_attributes


def _warn_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(
            f"lcengine.optimize_latents: {reason}; falling back to the eager autograd loop",
            RuntimeWarning,
            stacklevel=3,
        )


# ---------------------------------------------------------------------------------------------
# Public op.
# ---------------------------------------------------------------------------------------------


@torch.compiler.disable(reason=NOT_TRACEABLE)
def optimize_latents(
    z_start: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    realism_critic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    attribute_critic: Callable[[torch.Tensor], torch.Tensor],
    sigma_bar: Union[float, torch.Tensor],
    *,
    w_realism: float = 1.0,
    w_attr: float = 1.0,
    w_dist: float = 0.1,
    tau_r: float = 0.5,
    tau_a: float = 0.5,
    steps: int = 300,
    lr: float = 0.05,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    realism_attributes: Optional[int] = None,
    weight_dtype: torch.dtype = torch.float32,
    backend: Optional[str] = None,
    tuning: Optional[OptimizeTuning] = None,
) -> OptimizeResult:
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
        realism_critic: ``D(z, y[:, :realism_attributes]) -> [B]`` logits; a
            :class:`~.prepare.RealismCriticNet` for the fused backends.
        attribute_critic: ``D_attr(z) -> [B, A]`` logits; a :class:`~.prepare.CriticNet` or
            :class:`~.prepare.CriticStack` for the fused backends.
        sigma_bar: scalar or per-dimension scale of the distance penalty (> 0). # [] or [D]
        w_realism, w_attr, w_dist: loss weights (>= 0).
        tau_r: realism probability to exceed, in (0, 1).
        tau_a: confidence each requested attribute needs, in [0.5, 1).
        steps: maximum Adam updates per row (>= 1).
        lr, betas, eps: Adam hyper-parameters (torch.optim.Adam's formula).
        realism_attributes: leading columns of ``y`` the realism critic reads (default: its
            ``num_attributes``, else all); later columns are zero-shot constraints.
        weight_dtype: ``torch.float32`` (default) or ``torch.bfloat16``: the critics' weights
            are read in bf16 with fp32 accumulation, latents and Adam state in fp32 (GPU
            backends; eager runs its loop under bf16 autocast; native CPU refuses it).
        backend: "auto" (``AUTO_ORDER`` for the device, then eager), "eager", "native" (CPU or
            CUDA) or "triton" (CUDA, or CPU under TRITON_INTERPRET=1).
        tuning: how the fused runners compute (:class:`~.config.OptimizeTuning`; default: the
            innermost ``optimize_tuning`` block, else the ``LCENGINE_OPTIMIZE_*`` variables).

    Returns:
        :class:`OptimizeResult` (latents float32).

    Raises:
        TypeError, ValueError: bad inputs or unsupported critic structure (before any work).
        RuntimeError: an explicitly requested backend that cannot run this op, or a call
            inside ``torch.export`` tracing (:data:`NOT_TRACEABLE`).
    """
    if is_tracing(z_start if isinstance(z_start, torch.Tensor) else None):
        raise RuntimeError(NOT_TRACEABLE)
    yf = _check_inputs(z_start, y, mask, sigma_bar)
    b, d = z_start.shape
    num_attr = y.shape[1]
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise TypeError(f"betas must be a pair of floats, got {betas!r}")
    hyper = OptimizeHyperParams(
        steps=steps,
        lr=lr,
        beta1=betas[0],
        beta2=betas[1],
        eps=eps,
        w_realism=w_realism,
        w_attr=w_attr,
        w_dist=w_dist,
        tau_r=tau_r,
        tau_a=tau_a,
    )
    if weight_dtype not in WEIGHT_DTYPES:
        raise TypeError(
            f"weight_dtype must be torch.float32 or torch.bfloat16, got {weight_dtype!r}"
        )
    realism_attributes = _check_critics(
        realism_critic, attribute_critic, d, num_attr, realism_attributes
    )
    tuning = resolve_tuning(tuning)

    requested = requested_backend(backend)
    device = z_start.device
    critics, structure_error = None, None
    try:
        critics = parse_critics(realism_critic, attribute_critic, d, num_attr, realism_attributes)
    except (TypeError, ValueError) as exc:
        structure_error = exc
    if structure_error is not None and requested in ("native", "triton"):
        raise structure_error
    if isinstance(structure_error, ValueError) and requested == "auto":
        raise structure_error  # critics that claim the contract but break it: say so, not fall back
    if critics is not None and requested != "eager" and b > 0 and z_start.dtype != torch.float64:
        mismatch = forward_mismatch(
            critics, realism_critic, attribute_critic, z_start, yf[:, :realism_attributes]
        )
        if mismatch is not None:  # a fused path would optimize a different function
            critics, structure_error = None, TypeError(mismatch)
            if requested in ("native", "triton"):
                raise structure_error

    chosen = _choose_backend(
        requested, device, z_start.dtype, critics, structure_error, weight_dtype, rows=b
    )
    if b == 0:  # latents in the dtype the chosen backend returns (eager keeps float64)
        dtype = (
            z_start.dtype if chosen == "eager" and z_start.dtype == torch.float64 else torch.float32
        )
        return OptimizeResult(
            torch.zeros(0, d, dtype=dtype, device=device),
            torch.zeros(0, dtype=torch.bool, device=device),
            torch.zeros(0, dtype=torch.int64, device=device),
            torch.zeros(0, device=device),
            torch.zeros(0, num_attr, device=device),
            chosen,
        )
    if chosen == "eager":
        return _run_eager(
            z_start,
            yf,
            mask,
            realism_critic,
            attribute_critic,
            sigma_bar,
            hyper,
            weight_dtype,
            realism_attributes,
        )
    with torch.no_grad():
        prep = prepare(
            critics,
            z_start,
            yf,
            mask,
            sigma_bar,
            hyper,
            realism_attributes=realism_attributes,
            weight_dtype=weight_dtype,
        )
        if chosen == "triton":
            from .triton import run_triton

            z, conv, st, logits = run_triton(prep, hyper, tuning)
        elif device.type == "cpu":
            from .cpu import run_cpu

            z, conv, st, logits = run_cpu(prep, hyper, tuning)
        else:
            from .cuda import run_cuda

            z, conv, st, logits = run_cuda(prep, hyper, tuning)
        probs = torch.sigmoid(logits)  # [B, C]
    return OptimizeResult(
        latents=z,
        converged=conv,
        steps=st,
        realism_prob=probs[:, 0].contiguous(),
        attribute_prob=probs[:, 1:].contiguous(),
        backend=chosen,
    )


# ---------------------------------------------------------------------------------------------
# Backend choice.
# ---------------------------------------------------------------------------------------------


def _fused_unsupported(
    name: str,
    device: torch.device,
    dtype: torch.dtype,
    critics: Optional[Critics],
    structure_error: Optional[Exception],
    weight_dtype: torch.dtype,
) -> Optional[str]:
    """Why the fused backend ``name`` cannot run this call (None if it can)."""
    reason = unavailable_reason(name, device)
    if reason is not None:
        return reason
    if dtype == torch.float64:
        return "float64 latents run on the eager loop only"
    if critics is None:
        return f"unsupported critic structure ({structure_error})"
    for p in critics.parameters():
        if p.dtype != torch.float32:
            return f"critic weights must be float32 for the fused optimizer, got {p.dtype}"
        if p.device != device:
            return f"critic weights are on {p.device}, z_start on {device}"
    if name == "native" and device.type == "cpu":
        if weight_dtype != torch.float32:
            return (
                "bfloat16 critic weights are a GPU option (native on CUDA, or triton); the "
                "native CPU optimizer computes in float32"
            )
        from .cpu import blas_functions

        try:
            blas_functions()
        except RuntimeError as exc:
            return str(exc)
    if (
        name == "native"
        and device.type == "cuda"
        and not hasattr(native_module(), "optimize_latents_cuda")
    ):
        return "lcengine._C has no CUDA optimizer (built without nvcc)"
    return None


def _auto_order(
    device: torch.device, critics: Optional[Critics], weight_dtype: torch.dtype, rows: int
) -> tuple:
    """The fused backends ``auto`` tries for this call, in order."""
    order = AUTO_ORDER.get(device.type, ())
    if device.type != "cuda" or critics is None:
        return order
    narrow = critics.max_width() <= ROW_TILE_MAX_WIDTH
    native_first = weight_dtype == torch.float32 and narrow and rows <= NATIVE_FIRST_MAX_ROWS
    first = "native" if native_first else "triton"
    return (first,) + tuple(name for name in order if name != first)


def _choose_backend(
    requested: str,
    device: torch.device,
    dtype: torch.dtype,
    critics: Optional[Critics],
    structure_error: Optional[Exception],
    weight_dtype: torch.dtype,
    rows: int = 0,
) -> str:
    if requested == "eager":
        return "eager"
    if requested != "auto":
        reason = _fused_unsupported(
            requested, device, dtype, critics, structure_error, weight_dtype
        )
        if reason is not None:
            raise RuntimeError(f"optimize_latents: backend {requested!r} cannot run: {reason}")
        return requested
    if dtype == torch.float64:
        return "eager"  # auto keeps float64 on the eager loop, silently (like the other ops)
    reasons = []
    for name in _auto_order(device, critics, weight_dtype, rows):
        reason = _fused_unsupported(name, device, dtype, critics, structure_error, weight_dtype)
        if reason is None:
            return name
        reasons.append(f"{name}: {reason}")
    _warn_once("; ".join(reasons) or f"no fused optimizer for {device.type} tensors")
    return "eager"


def _run_eager(
    z_start: torch.Tensor,
    yf: torch.Tensor,
    mask: torch.Tensor,
    realism_critic: Callable,
    attribute_critic: Callable,
    sigma_bar: Union[float, torch.Tensor],
    hyper: OptimizeHyperParams,
    weight_dtype: torch.dtype,
    realism_attributes: int,
) -> OptimizeResult:
    """The reference loop (under autocast for bfloat16 weights)."""
    kwargs = dict(hyper.reference_kwargs(), realism_attributes=realism_attributes)
    if weight_dtype == torch.float32:
        out = optimize_latents_ref(
            z_start, yf, mask, realism_critic, attribute_critic, sigma_bar, **kwargs
        )
    else:
        with torch.autocast(z_start.device.type, dtype=weight_dtype):
            out = optimize_latents_ref(
                z_start, yf, mask, realism_critic, attribute_critic, sigma_bar, **kwargs
            )
        out = tuple(t.float() if t.is_floating_point() else t for t in out)
    return OptimizeResult(*out)
