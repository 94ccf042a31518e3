# SPDX-License-Identifier: Apache-2.0
"""Philox normal stream and the reparameterization trick (flat elementwise kernels).

The stream: Philox4x32-10 at counter (lo, hi, 0, 0) of the 64-bit position ``offset + i``, key
(seed_lo, seed_hi), Box-Muller on the first two words (``_math.philox_normal``). It is what
``tl.randn(seed, offset + i)`` gives with int64 offsets from Triton 3.4 on, but written out, so
that every Triton release computes it (before 3.4, tl.randn ran Philox4x64 on int64 offsets).
Backward regenerates eps from (seed, offset) instead of storing it.
"""

# No `from __future__ import annotations`: the interpreter only recognizes real tl.constexpr
# annotations, not their strings.
import torch
import triton
import triton.language as tl

from ._common import FLAT_BLOCK, FLAT_NUM_WARPS, flat_grid, offset_arg, seed_arg, wrap
from ._math import philox_first_two, philox_normal


@triton.jit(do_not_specialize=["seed", "offset"])
def _standard_normal_fwd_kernel(out_ptr, n_elements, seed, offset, BLOCK: tl.constexpr):
    """out[i] = eps(seed, offset + i), i = flat index (int64)."""
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # [BLOCK] int64
    mask = idx < n_elements
    eps = philox_normal(seed, offset + idx)  # [BLOCK] fp32
    tl.store(out_ptr + idx, eps.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["seed", "offset"])
def _reparameterize_fwd_kernel(
    mu_ptr, logvar_ptr, z_ptr, n_elements, seed, offset, BLOCK: tl.constexpr
):
    """z[i] = mu[i] + exp(logvar[i] / 2) * eps(seed, offset + i), in float32."""
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # [BLOCK] int64
    mask = idx < n_elements
    mu = tl.load(mu_ptr + idx, mask=mask, other=0.0).to(tl.float32)  # [BLOCK]
    lv = tl.load(logvar_ptr + idx, mask=mask, other=0.0).to(tl.float32)  # [BLOCK]
    eps = philox_normal(seed, offset + idx)  # [BLOCK]
    z = mu + tl.exp(0.5 * lv) * eps
    tl.store(z_ptr + idx, z.to(z_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["seed", "offset"])
def _reparameterize_bwd_kernel(
    grad_z_ptr, logvar_ptr, grad_logvar_ptr, n_elements, seed, offset, BLOCK: tl.constexpr
):
    """grad_logvar[i] = grad_z[i] * 0.5 * exp(logvar[i] / 2) * eps(seed, offset + i).

    (grad_mu = grad_z needs no kernel.)
    """
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # [BLOCK] int64
    mask = idx < n_elements
    g = tl.load(grad_z_ptr + idx, mask=mask, other=0.0).to(tl.float32)  # [BLOCK]
    lv = tl.load(logvar_ptr + idx, mask=mask, other=0.0).to(tl.float32)  # [BLOCK]
    eps = philox_normal(seed, offset + idx)  # [BLOCK]
    grad_lv = g * 0.5 * tl.exp(0.5 * lv) * eps
    tl.store(grad_logvar_ptr + idx, grad_lv.to(grad_logvar_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["seed", "offset"])
def _philox_words_kernel(out_ptr, n_elements, seed, offset, BLOCK: tl.constexpr):
    """out[0, i], out[1, i] = the first two Philox words at offset + i, bitcast to int32 (the
    integer stream behind eps, for bit-exact checks against lcengine.reference.philox)."""
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # [BLOCK] int64
    mask = idx < n_elements
    w0, w1 = philox_first_two(seed, offset + idx)  # [BLOCK] uint32 each
    tl.store(out_ptr + idx, w0.to(tl.int32, bitcast=True), mask=mask)
    tl.store(out_ptr + n_elements + idx, w1.to(tl.int32, bitcast=True), mask=mask)


def philox_words(out: torch.Tensor, seed: int, offset: int) -> None:
    """Fill ``out`` (int32, contiguous ``[2, n]``) with the first two Philox words at stream
    positions offset .. offset + n - 1 (uint32 bits as int32)."""
    n = out.shape[1]
    if n == 0:
        return
    wrap(_philox_words_kernel)[flat_grid(n)](
        out, n, seed_arg(seed), offset_arg(offset), BLOCK=FLAT_BLOCK, num_warps=FLAT_NUM_WARPS
    )


def standard_normal(out: torch.Tensor, seed: int, offset: int) -> None:
    """Fill ``out`` (any shape, contiguous, float dtype) with eps(seed, offset + flat index)."""
    n = out.numel()
    if n == 0:
        return
    wrap(_standard_normal_fwd_kernel)[flat_grid(n)](
        out, n, seed_arg(seed), offset_arg(offset), BLOCK=FLAT_BLOCK, num_warps=FLAT_NUM_WARPS
    )


def reparameterize(
    mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, seed: int, offset: int
) -> None:
    """z = mu + exp(logvar / 2) * eps over the flat index. mu, logvar, z: same numel. # [N]"""
    n = mu.numel()
    if n == 0:
        return
    wrap(_reparameterize_fwd_kernel)[flat_grid(n)](
        mu,
        logvar,
        z,
        n,
        seed_arg(seed),
        offset_arg(offset),
        BLOCK=FLAT_BLOCK,
        num_warps=FLAT_NUM_WARPS,
    )


def reparameterize_backward(
    grad_z: torch.Tensor, logvar: torch.Tensor, grad_logvar: torch.Tensor, seed: int, offset: int
) -> None:
    """grad_logvar = grad_z * 0.5 * exp(logvar / 2) * eps, eps regenerated. # [N] each"""
    n = grad_z.numel()
    if n == 0:
        return
    wrap(_reparameterize_bwd_kernel)[flat_grid(n)](
        grad_z,
        logvar,
        grad_logvar,
        n,
        seed_arg(seed),
        offset_arg(offset),
        BLOCK=FLAT_BLOCK,
        num_warps=FLAT_NUM_WARPS,
    )
