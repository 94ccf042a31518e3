# SPDX-License-Identifier: Apache-2.0
"""Shared validation and dispatch helpers for the public ops (validate, allocate, dispatch)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..backend import EAGER_DTYPES, FUSED_DTYPES, choose_backend, native_module, triton_module
from ..reference import REDUCTIONS
from ..validation import (  # noqa: F401  (re-exported to the op modules)
    MAX_INT64,
    check_adam,
    check_int,
    check_positive_float,
)

DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


def check_tensor(name: str, t, *, allow_empty: bool = False) -> torch.Tensor:
    """A floating tensor with at least one dimension (and elements unless allow_empty)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in EAGER_DTYPES:
        raise TypeError(
            f"{name} must be float32, float16 or bfloat16 (float64 on the eager "
            f"backend), got {t.dtype}"
        )
    if t.dim() < 1:
        raise ValueError(f"{name} must have at least one dimension [..., D], got a 0-d tensor")
    if not allow_empty and t.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    return t


def check_same(
    name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor, *, dtype: bool = True
) -> None:
    """``t`` matches ``ref`` in shape, device and (optionally) dtype."""
    if t.shape != ref.shape:
        raise ValueError(
            f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(t.shape)}"
        )
    if t.device != ref.device:
        raise ValueError(
            f"{name} is on {t.device} but {ref_name} is on {ref.device}; "
            "all tensors must be on one device"
        )
    if dtype and t.dtype != ref.dtype:
        raise TypeError(f"{name} must have the dtype of {ref_name} ({ref.dtype}), got {t.dtype}")


def check_reduction(reduction) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def pick_backend(backend: Optional[str], t: torch.Tensor, names: Sequence[str]) -> str:
    """Resolve the backend for tensor ``t`` (an op's first tensor); float64 is eager-only.

    Traceable: under ``torch.compile`` the choice is made once at trace time
    (:func:`lcengine.backend.choose_backend`)."""
    chosen = choose_backend(backend, t.device, t.dtype, stacklevel=4)
    if chosen != "eager" and t.dtype not in FUSED_DTYPES:
        raise TypeError(
            f"{names[0]} has dtype {t.dtype}, which the {chosen!r} backend does not "
            "support (float32, float16, bfloat16); use backend='eager' for float64"
        )
    return chosen


def rows_and_dim(t: torch.Tensor) -> tuple[int, int]:
    dim = t.shape[-1]
    return (t.numel() // dim if dim else 0), dim


def needs_grad(*tensors: Optional[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def native_fn(op: str, device: torch.device):
    """``_C.<op>_cpu`` or ``_C.<op>_cuda`` (with the current stream bound as last argument)."""
    mod = native_module()
    if device.type == "cpu":
        return getattr(mod, f"{op}_cpu")
    fn = getattr(mod, f"{op}_cuda")
    stream = torch.cuda.current_stream(device).cuda_stream

    def launch(*args):
        with torch.cuda.device(device):
            return fn(*args, stream)

    return launch


def triton_fn(op: str):
    return getattr(triton_module(), op)


def is_tracing(t: Optional[torch.Tensor] = None) -> bool:
    """Inside ``torch.compile`` or ``torch.export`` tracing (Dynamo, or ``t`` a fake tensor):
    tensor values cannot be read on the host."""
    if torch.compiler.is_compiling():
        return True
    if t is None:
        return False
    from torch._subclasses.fake_tensor import is_fake

    return is_fake(t)


def is_capturing(t: torch.Tensor) -> bool:
    """``t`` is a CUDA tensor and the current stream is capturing a CUDA graph."""
    return t.is_cuda and torch.cuda.is_current_stream_capturing()


def require(cond: torch.Tensor, message: str) -> None:
    """``ValueError(message)`` unless the 0-d bool tensor ``cond`` holds.

    Read on the host outside tracing and CUDA graph capture (on CUDA that read synchronizes).
    Inside ``torch.compile``/``torch.export`` tracing and CUDA graph capture the check is
    ``torch._assert_async(cond, message)`` instead: it stays in the graph and runs on the
    device without a synchronization, so a violation surfaces when the graph runs
    (``RuntimeError(message)`` on CPU, a device-side assert on CUDA).
    """
    if is_tracing(cond) or is_capturing(cond):
        torch._assert_async(cond, message)
    elif not bool(cond):
        raise ValueError(message)


def is_unit_grad(grad: torch.Tensor) -> bool:
    """True when an incoming gradient is exactly one everywhere, so a saved unit gradient can
    be returned without another pass over memory.

    Answered for CPU tensors only, where reading the values is a memory read; for any other
    device (a host-device synchronization, impossible inside a CUDA graph) and while tracing the
    answer is False and the caller multiplies."""
    if is_tracing(grad) or grad.device.type != "cpu" or grad.requires_grad:
        return False
    if grad.numel() == 1:
        return grad.item() == 1.0
    return bool((grad == 1).all())
