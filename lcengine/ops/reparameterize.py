# SPDX-License-Identifier: Apache-2.0
"""reparameterize and standard_normal: Philox noise keyed by (seed, offset + flat index)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..backend import FUSED_DTYPES, choose_backend
from ..reference import reparameterize_ref, standard_normal_ref
from ._common import (
    DTYPE_CODES,
    MAX_INT64,
    check_int,
    check_same,
    check_tensor,
    native_fn,
    pick_backend,
    triton_fn,
)
from ._guard import check_op_backend, check_op_int, check_op_like, check_op_tensor
from ._reduce import refuse_double_backward


def _check_seed_offset(seed, offset, numel) -> None:
    """While tracing, ``numel`` may be symbolic (a dynamic batch): the end of the stream
    (``offset + numel``) is then checked by the registered op when it runs."""
    check_int("seed", seed)
    traced = torch.compiler.is_compiling()
    check_int("offset", offset, maximum=MAX_INT64 if traced else MAX_INT64 - numel)


def _check_op_stream(op: str, backend, seed, offset, numel: int) -> None:
    """The registered ops' own checks of the backend and the stream's key and position."""
    check_op_backend(op, backend)
    check_op_int(op, "seed", seed, minimum=0, maximum=MAX_INT64)
    check_op_int(op, "offset", offset, minimum=0, maximum=MAX_INT64 - numel)


@torch.library.custom_op("lcengine::reparameterize", mutates_args=())
def _reparameterize_op(
    mu: torch.Tensor, logvar: torch.Tensor, seed: int, offset: int, backend: str
) -> torch.Tensor:
    check_op_tensor("reparameterize", "mu", mu)
    check_op_like("reparameterize", "logvar", logvar, "mu", mu)
    _check_op_stream("reparameterize", backend, seed, offset, mu.numel())
    mu, logvar = mu.contiguous(), logvar.contiguous()  # [..., D]
    z = torch.empty_like(mu)
    if backend == "triton":
        triton_fn("reparameterize")(mu, logvar, z, seed, offset)
    else:
        native_fn("reparameterize", mu.device)(
            mu.data_ptr(),
            logvar.data_ptr(),
            z.data_ptr(),
            mu.numel(),
            seed,
            offset,
            DTYPE_CODES[mu.dtype],
        )
    return z


@_reparameterize_op.register_fake
def _(mu, logvar, seed, offset, backend):
    return torch.empty_like(mu, memory_format=torch.contiguous_format)


@torch.library.custom_op("lcengine::reparameterize_backward", mutates_args=())
def _reparameterize_backward_op(
    grad_z: torch.Tensor, logvar: torch.Tensor, seed: int, offset: int, backend: str
) -> torch.Tensor:
    check_op_tensor("reparameterize_backward", "logvar", logvar)
    check_op_like("reparameterize_backward", "grad_z", grad_z, "logvar", logvar)
    _check_op_stream("reparameterize_backward", backend, seed, offset, logvar.numel())
    grad_z, logvar = grad_z.contiguous(), logvar.contiguous()  # [..., D]
    grad_logvar = torch.empty_like(logvar)
    if backend == "triton":
        triton_fn("reparameterize_backward")(grad_z, logvar, grad_logvar, seed, offset)
    else:
        native_fn("reparameterize_backward", logvar.device)(
            grad_z.data_ptr(),
            logvar.data_ptr(),
            grad_logvar.data_ptr(),
            logvar.numel(),
            seed,
            offset,
            DTYPE_CODES[logvar.dtype],
        )
    return grad_logvar


@_reparameterize_backward_op.register_fake
def _(grad_z, logvar, seed, offset, backend):
    return torch.empty_like(logvar, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    _, logvar, seed, offset, backend = inputs
    ctx.save_for_backward(logvar)
    ctx.seed, ctx.offset, ctx.backend = seed, offset, backend


def _backward(ctx, grad_z):
    refuse_double_backward("reparameterize")
    (logvar,) = ctx.saved_tensors
    # The noise is regenerated from (seed, offset) instead of being stored.
    grad_logvar = _reparameterize_backward_op(
        grad_z.to(logvar.dtype), logvar, ctx.seed, ctx.offset, ctx.backend
    )
    return grad_z, grad_logvar, None, None, None


_reparameterize_op.register_autograd(_backward, setup_context=_setup_context)


def reparameterize(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    *,
    seed: int,
    offset: int = 0,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Sample ``z = mu + exp(logvar / 2) * eps`` with counter-based noise.

    ``eps`` is the Philox4x32-10 normal stream keyed by ``(seed, offset + flat element index)``
    (Triton's ``tl.randn``), so the result does not depend on the backend or on how a batch is
    split: the rows ``[a, b)`` of a batch equal a call on those rows alone with
    ``offset + a * D``. The backward pass regenerates ``eps`` instead of storing it.

    Args:
        mu: mean. # [..., D]
        logvar: log-variance, same shape, dtype and device as ``mu``. # [..., D]
        seed: key of the stream, in [0, 2**63).
        offset: stream position of element 0, >= 0.
        backend: "auto" (default), "eager", "native" or "triton".

    Returns:
        z, same shape and dtype as ``mu`` (contiguous). # [..., D]
    """
    check_tensor("mu", mu)
    check_tensor("logvar", logvar)
    check_same("logvar", logvar, "mu", mu)
    _check_seed_offset(seed, offset, mu.numel())
    chosen = pick_backend(backend, mu, ("mu",))
    if chosen == "eager":
        return reparameterize_ref(mu, logvar, seed=seed, offset=offset)
    return _reparameterize_op(mu, logvar, seed, offset, chosen)


def standard_normal(
    shape: Sequence[int],
    *,
    seed: int,
    offset: int = 0,
    device="cpu",
    dtype: torch.dtype = torch.float32,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Prior samples ``z ~ N(0, I)`` from the same Philox stream as :func:`reparameterize`.

    Args:
        shape: output shape, every size >= 1.
        seed: key of the stream, in [0, 2**63).
        offset: stream position of element 0, >= 0.
        device: output device.
        dtype: float32, float16 or bfloat16 (float64 on the eager backend).
        backend: "auto" (default), "eager", "native" or "triton".
    """
    if isinstance(shape, int):
        shape = (shape,)
    try:  # a SymInt (a dynamic size while tracing) stays symbolic
        shape = tuple(s if isinstance(s, torch.SymInt) else int(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape must be a sequence of ints, got {shape!r}") from None
    if len(shape) == 0 or any(type(s) is int and s < 1 for s in shape):
        raise ValueError(f"shape must be non-empty with every size >= 1, got {shape}")
    for s in shape:
        if isinstance(s, torch.SymInt):  # a run-time assertion, not a guard on the size
            torch._check(s >= 1, lambda: f"shape must have every size >= 1, got {shape}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    device = torch.device(device)
    numel = 1
    for s in shape:
        numel *= s
    _check_seed_offset(seed, offset, numel)
    chosen = choose_backend(backend, device, dtype, stacklevel=3)
    if chosen != "eager" and dtype not in FUSED_DTYPES:
        raise TypeError(
            f"dtype {dtype} is not supported by the {chosen!r} backend "
            "(float32, float16, bfloat16); use backend='eager' for float64"
        )
    if chosen == "eager":
        return standard_normal_ref(shape, seed=seed, offset=offset, device=device, dtype=dtype)
    return _standard_normal_op(list(shape), seed, offset, device, dtype, chosen)


@torch.library.custom_op("lcengine::standard_normal", mutates_args=())
def _standard_normal_op(
    shape: Sequence[int],
    seed: int,
    offset: int,
    device: torch.device,
    dtype: torch.dtype,
    backend: str,
) -> torch.Tensor:
    if dtype not in DTYPE_CODES:
        raise TypeError(
            f"lcengine::standard_normal: dtype must be float32, float16 or bfloat16, got {dtype}"
        )
    if any(s < 0 for s in shape):
        raise ValueError(f"lcengine::standard_normal: shape must not be negative, got {shape}")
    numel = 1
    for s in shape:
        numel *= s
    _check_op_stream("standard_normal", backend, seed, offset, numel)
    out = torch.empty(shape, device=device, dtype=dtype)
    if backend == "triton":
        triton_fn("standard_normal")(out, seed, offset)
    else:
        native_fn("standard_normal", out.device)(
            out.data_ptr(), out.numel(), seed, offset, DTYPE_CODES[dtype]
        )
    return out


@_standard_normal_op.register_fake
def _(shape, seed, offset, device, dtype, backend):
    return torch.empty(shape, device=device, dtype=dtype)
