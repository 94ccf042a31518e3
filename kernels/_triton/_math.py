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
    r = tl.log(u) * tl.div_rn(x, safe_d)  # div_rn: `/` is approximate on NVIDIA GPUs
    r = tl.where(d == 0.0, x, r)
    return tl.where(x > 1.0e30, tl.log(tl.maximum(x, 1.0)), r)  # max: no log(0) warnings


# Philox4x32-10 constants (Salmon et al. 2011; csrc/philox.h, lcengine/reference/philox.py).
PHILOX_KEY_A = tl.constexpr(0x9E3779B9)
PHILOX_KEY_B = tl.constexpr(0xBB67AE85)
PHILOX_ROUND_A = tl.constexpr(0xD2511F53)
PHILOX_ROUND_B = tl.constexpr(0xCD9E8D57)
UNIFORM_SCALE = tl.constexpr(4.6566127342e-10)  # largest s with (2^31 - 1) s < 1 in float32
TWO_PI = tl.constexpr(6.283185307179586)
MIN_UNIFORM = tl.constexpr(1.0e-7)


@triton.jit
def philox_first_two(seed, counter):
    """The first two uint32 words of Philox4x32-10 at counter (lo, hi, 0, 0) of the 64-bit
    ``counter`` (int64 block) with key (lo, hi) of the 64-bit ``seed`` (integer scalar).

    Written out instead of calling tl.randn/tl.philox, whose stream for int64 offsets depends on
    the Triton release: before 3.4 (triton-lang/triton#6832) ``tl.randint4x`` ran Philox4x64 on
    a 64-bit offset (64-bit words, 64-bit constants, key (seed, 0)), from 3.4 on Philox4x32 on
    its two 32-bit halves. Only uint32 multiplies, ``tl.umulhi``, xor and adds: the same bits on
    every release, on the GPU and under the interpreter.
    """
    c0 = counter.to(tl.uint32)  # low word (truncation)
    c1 = (counter >> 32).to(tl.uint32)  # high word (arithmetic shift: same low 32 bits)
    c2 = c0 * 0
    c3 = c2
    seed64 = seed.to(tl.int64)
    k0 = seed64.to(tl.uint32)
    k1 = (seed64 >> 32).to(tl.uint32)
    round_a = tl.full([], PHILOX_ROUND_A, tl.uint32)
    round_b = tl.full([], PHILOX_ROUND_B, tl.uint32)
    key_a = tl.full([], PHILOX_KEY_A, tl.uint32)
    key_b = tl.full([], PHILOX_KEY_B, tl.uint32)
    for _ in tl.static_range(10):
        hi_b = tl.umulhi(round_b, c2)
        hi_a = tl.umulhi(round_a, c0)
        lo_b = round_b * c2
        lo_a = round_a * c0
        c0 = hi_b ^ c1 ^ k0
        c2 = hi_a ^ c3 ^ k1
        c1 = lo_b
        c3 = lo_a
        k0 = k0 + key_a
        k1 = k1 + key_b
    return c0, c1


@triton.jit
def uint_to_uniform(bits):
    """A uint32 word as a float32 uniform in [0, 1): (int32 word, negatives x -> -x - 1) times
    4.6566127342e-10, as Triton's uint_to_uniform_float (``~x`` is -x - 1 without overflow)."""
    x = bits.to(tl.int32, bitcast=True)
    x = tl.where(x < 0, ~x, x)
    return x.to(tl.float32) * UNIFORM_SCALE


@triton.jit
def philox_normal(seed, counter):
    """eps = sqrt(-2 log(max(u0, 1e-7))) cos(2 pi u1) from the first two Philox words at
    ``counter``: the stream of lcengine.reference.philox_normal_ref (and of tl.randn with int64
    offsets from Triton 3.4 on). sqrt is IEEE-rounded; log and cos are the platform's."""
    w0, w1 = philox_first_two(seed, counter)
    u0 = tl.maximum(uint_to_uniform(w0), MIN_UNIFORM)
    u1 = uint_to_uniform(w1)
    r = tl.sqrt_rn(-2.0 * tl.log(u0))
    # tensor * constexpr: Triton 3.9's interpreter cannot take constexpr * tensor into tl.cos
    return r * tl.cos(u1 * TWO_PI)
