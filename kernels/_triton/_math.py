# SPDX-License-Identifier: Apache-2.0
"""Device helpers shared by several kernels."""

# No `from __future__ import annotations`: the interpreter only recognizes real tl.constexpr
# annotations, not their strings.
import triton
import triton.language as tl


@triton.jit
def _log1p_nonneg(x):
    """log(1 + x) for x >= 0 (or NaN), accurate for tiny x.

    Goldberg's trick: with u = fl(1 + x), log1p(x) = log(u) * x / (u - 1) cancels the rounding of
    1 + x; u == 1 means x is below half an ulp of 1, where log1p(x) = x to float precision. Above
    1e30, x / (u - 1) could be inf / inf, and log(x) is exact to float precision there anyway.
    Portable (no libdevice), so the interpreter and the GPU compute the same formula.
    """
    u = 1.0 + x
    d = u - 1.0
    safe_d = tl.where(d == 0.0, 1.0, d)
    r = tl.log(u) * (x / safe_d)
    r = tl.where(d == 0.0, x, r)
    return tl.where(x > 1.0e30, tl.log(tl.maximum(x, 1.0)), r)  # max: no log(0) warnings
