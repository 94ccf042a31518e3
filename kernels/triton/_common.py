# SPDX-License-Identifier: Apache-2.0
"""Launch helpers shared by the Triton launchers: block-size heuristics and traceable launches.

Nothing here imports lcengine: this folder ships as the subpackage ``lcengine._triton``.
"""
from __future__ import annotations

from typing import Any, Callable

import triton

_U64_MASK = (1 << 64) - 1

# Elements per program for flat elementwise kernels (RNG-bound: ~40 IMADs of Philox per element).
FLAT_BLOCK = 2048
FLAT_NUM_WARPS = 8

# Row kernels: a [BLOCK_R, BLOCK_D] tile per loop step, looping over D in BLOCK_D chunks.
MAX_BLOCK_D = 1024  # a 1024-wide row fits one step; D = 8192 takes 8 steps
TILE_ELEMS = 4096  # elements per step: 16 per thread at 8 warps (4 fp32 x 128-bit loads)


def wrap(kernel: Callable) -> Any:
    """``torch.library.wrap_triton(kernel)`` where available, else the kernel itself.

    The wrapped form lets ``torch.compile``/``torch.export`` trace the launch inside a
    ``torch.library.triton_op``; in eager mode (and under TRITON_INTERPRET=1) it just launches.
    """
    try:
        from torch.library import wrap_triton  # torch >= 2.6
    except ImportError:
        return kernel
    try:
        return wrap_triton(kernel)
    except RuntimeError:  # older torch that does not know interpreted kernels
        return kernel


def seed_arg(seed: int) -> int:
    """The 64-bit Philox key as Triton receives it (int32/int64/uint64 by value; all non-negative)."""
    return int(seed) & _U64_MASK


def offset_arg(offset: int) -> int:
    """A 64-bit stream offset as a signed int64 with the same bits.

    ``offset + index`` then wraps modulo 2^64 exactly like the uint64 arithmetic of the native
    backends, and tl.randn reads its low/high words from the same bits.
    """
    offset = int(offset) & _U64_MASK
    return offset - (1 << 64) if offset >= (1 << 63) else offset


def flat_grid(numel: int) -> tuple[int]:
    return (triton.cdiv(numel, FLAT_BLOCK),)


def row_config(rows: int, dim: int) -> dict[str, int]:
    """Block sizes and warps for a row kernel over a [rows, dim] tensor.

    BLOCK_D is the next power of two of ``dim`` capped at MAX_BLOCK_D (so one step covers a row up
    to 1024 wide); BLOCK_R packs enough rows into a step to reach TILE_ELEMS elements, but no more
    rows than exist. EVEN_D drops the column mask when BLOCK_D divides dim.
    """
    block_d = min(triton.next_power_of_2(max(dim, 1)), MAX_BLOCK_D)
    block_r = max(1, min(TILE_ELEMS // block_d, triton.next_power_of_2(max(rows, 1))))
    tile = block_r * block_d
    num_warps = 8 if tile >= 4096 else (4 if tile >= 1024 else (2 if tile >= 256 else 1))
    return {
        "BLOCK_R": block_r,
        "BLOCK_D": block_d,
        "EVEN_D": dim % block_d == 0,
        "num_warps": num_warps,
    }


def row_grid(rows: int, block_r: int) -> tuple[int]:
    return (triton.cdiv(rows, block_r),)
