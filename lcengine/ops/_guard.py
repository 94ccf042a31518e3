# SPDX-License-Identifier: Apache-2.0
"""Checks inside the registered ops' own bodies (``torch.ops.lcengine.*``).

The public functions validate their arguments with friendly messages; the registered ops are
also reachable directly (``torch.ops.lcengine.<op>``, and through ``torch.compile`` and
``torch.export``), where nothing above them has checked anything. Before handing raw pointers to
``_C`` or Triton, each op body checks here what could make a kernel read or write outside its
buffers, or compute something else silently: the backend name, tensor types and storage dtypes,
shapes and devices that must match, contiguity of buffers written in place, integer ranges, and
overlapping memory between buffers that must be distinct. Every check reads metadata only (no
device synchronization) and raises ``TypeError``/``ValueError`` naming the op and the argument.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ._common import DTYPE_CODES

FUSED_BACKENDS = ("native", "triton")


def _where(op: str) -> str:
    return f"lcengine::{op}"


def check_op_backend(op: str, backend: Any) -> None:
    """``backend`` names a fused backend (the registered ops have no eager path)."""
    if backend not in FUSED_BACKENDS:
        raise ValueError(f"{_where(op)}: backend must be one of {FUSED_BACKENDS}, got {backend!r}")


def check_op_tensor(op: str, name: str, t: Any, *, min_dim: int = 1) -> torch.Tensor:
    """A tensor whose dtype the kernels store (float32, float16, bfloat16)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{_where(op)}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in DTYPE_CODES:
        raise TypeError(f"{_where(op)}: {name} must be float32, float16 or bfloat16, got {t.dtype}")
    if t.dim() < min_dim:
        raise ValueError(f"{_where(op)}: {name} must have at least {min_dim} dimension(s)")
    return t


def check_op_like(op: str, name: str, t: Any, ref_name: str, ref: torch.Tensor) -> torch.Tensor:
    """``t`` has ``ref``'s shape, storage dtype and device."""
    check_op_tensor(op, name, t)
    if t.shape != ref.shape:
        raise ValueError(
            f"{_where(op)}: {name} must have the shape of {ref_name} {tuple(ref.shape)}, "
            f"got {tuple(t.shape)}"
        )
    if t.dtype != ref.dtype:
        raise TypeError(
            f"{_where(op)}: {name} must have the dtype of {ref_name} ({ref.dtype}), got {t.dtype}"
        )
    if t.device != ref.device:
        raise ValueError(f"{_where(op)}: {name} is on {t.device} but {ref_name} is on {ref.device}")
    return t


def check_op_contiguous(op: str, name: str, t: torch.Tensor) -> None:
    """A buffer the kernel writes in place through its pointer must be contiguous."""
    if not t.is_contiguous():
        raise ValueError(f"{_where(op)}: {name} must be contiguous (it is written in place)")


def check_op_int(op: str, name: str, value: Any, *, minimum: int, maximum: int) -> int:
    """An int in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{_where(op)}: {name} must be an int, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{_where(op)}: {name} must be in [{minimum}, {maximum}], got {value}")
    return value


def _byte_span(t: torch.Tensor) -> tuple[int, int]:
    """[first, last) byte addresses that ``t``'s elements can touch."""
    if t.numel() == 0:
        return t.data_ptr(), t.data_ptr()
    extent = 1 + sum((s - 1) * abs(st) for s, st in zip(t.shape, t.stride()))
    return t.data_ptr(), t.data_ptr() + extent * t.element_size()


def check_op_disjoint(op: str, **tensors: Optional[torch.Tensor]) -> None:
    """No two of ``tensors`` share memory (``None`` entries are skipped)."""
    items = [(n, t) for n, t in tensors.items() if t is not None and t.numel() > 0]
    for i, (name_a, a) in enumerate(items):
        a0, a1 = _byte_span(a)
        for name_b, b in items[i + 1 :]:
            if a.device != b.device:
                continue
            b0, b1 = _byte_span(b)
            if a0 < b1 and b0 < a1:
                raise ValueError(
                    f"{_where(op)}: {name_a} and {name_b} share memory; pass distinct tensors "
                    "(clone one of them)"
                )
