# SPDX-License-Identifier: Apache-2.0
"""Eager Philox4x32-10 normal stream: the ground truth every backend's RNG is tested against.

The stream is Triton's ``tl.randn(seed, offset)`` with 64-bit offsets. uint32 arithmetic is
emulated in int64 tensors with 16-bit splits so no product overflows.
"""

from __future__ import annotations

import math

import torch

_MASK32 = 0xFFFFFFFF
_KEY_A = 0x9E3779B9
_KEY_B = 0xBB67AE85
_ROUND_A = 0xD2511F53
_ROUND_B = 0xCD9E8D57
_UNIFORM_SCALE = 4.6566127342e-10
_TWO_PI = 6.283185307179586
_MIN_UNIFORM = 1.0e-7


def _mul_hi_lo(const: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit words of ``const * x`` for uint32 values held in int64 tensors."""
    x_hi = x >> 16  # [N] < 2^16
    x_lo = x & 0xFFFF  # [N] < 2^16
    p_hi = const * x_hi  # [N] < 2^48
    p_lo = const * x_lo  # [N] < 2^48
    mid = p_hi + (p_lo >> 16)  # [N] < 2^49: bits 16.. of the full product
    hi = mid >> 16
    lo = (((mid & 0xFFFF) << 16) | (p_lo & 0xFFFF)) & _MASK32
    return hi & _MASK32, lo


def philox_first_two_ref(counter: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First two words of Philox4x32-10 at counters ``(counter_lo, counter_hi, 0, 0)``.

    Args:
        counter: int64 tensor of non-negative 64-bit counters. # [N]
        seed: non-negative integer key (low and high 32-bit words are the two keys).

    Returns:
        Two int64 tensors holding uint32 values. # [N], [N]
    """
    c0 = counter & _MASK32
    c1 = (counter >> 32) & _MASK32
    c2 = torch.zeros_like(c0)
    c3 = torch.zeros_like(c0)
    k0 = seed & _MASK32
    k1 = (seed >> 32) & _MASK32
    for _ in range(10):
        hi_b, lo_b = _mul_hi_lo(_ROUND_B, c2)
        hi_a, lo_a = _mul_hi_lo(_ROUND_A, c0)
        c0, c2 = hi_b ^ c1 ^ k0, hi_a ^ c3 ^ k1
        c1, c3 = lo_b, lo_a
        k0 = (k0 + _KEY_A) & _MASK32
        k1 = (k1 + _KEY_B) & _MASK32
    return c0, c1


def _uint_to_uniform(bits: torch.Tensor) -> torch.Tensor:
    signed = torch.where(bits >= 2**31, bits - 2**32, bits)  # [N] as int32 values
    folded = torch.where(signed < 0, -signed - 1, signed)
    return folded.to(torch.float32) * torch.tensor(_UNIFORM_SCALE, dtype=torch.float32)


def philox_normal_ref(numel: int, seed: int, offset: int = 0, device="cpu") -> torch.Tensor:
    """``numel`` float32 N(0, 1) samples at stream positions ``offset .. offset + numel - 1``.

    eps_i = sqrt(-2 log(max(u0, 1e-7))) * cos(2 pi u1), (u0, u1) from Philox at offset + i.
    """
    counter = torch.arange(numel, dtype=torch.int64, device=device) + int(offset)  # [N]
    w0, w1 = philox_first_two_ref(counter, int(seed))
    u0 = torch.clamp_min(_uint_to_uniform(w0), _MIN_UNIFORM)  # [N]
    u1 = _uint_to_uniform(w1)  # [N]
    theta = torch.tensor(_TWO_PI, dtype=torch.float32) * u1
    return torch.sqrt(-2.0 * torch.log(u0)) * torch.cos(theta)


assert math.isclose(_UNIFORM_SCALE * (2**31 - 1), 1.0, rel_tol=1e-6)
