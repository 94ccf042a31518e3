# SPDX-License-Identifier: Apache-2.0
"""KL(N(mu, exp(logvar)) || N(0, I)) per row, with the gradient fused into the same pass."""
# No `from __future__ import annotations`: the interpreter only recognizes real tl.constexpr
# annotations, not their strings.
from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import row_grid, row_launch_config, wrap


@triton.jit
def _gaussian_kl_fwd_kernel(mu_ptr, logvar_ptr, kl_rows_ptr, grad_mu_ptr, grad_logvar_ptr,
                            grad_scale, n_rows, dim, HAS_GRAD: tl.constexpr,
                            EVEN_D: tl.constexpr, D_STATIC: tl.constexpr,
                            BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """kl_rows[r] = -1/2 sum_d (1 + lv - mu^2 - exp(lv))   (float32 accumulation).

    With HAS_GRAD, also the gradient of grad_scale * kl_rows[r], in the input dtype:
        grad_mu = grad_scale * mu,   grad_logvar = grad_scale * 1/2 * (exp(lv) - 1).
    One program owns BLOCK_R rows and loops over D in BLOCK_D chunks.
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)  # [BLOCK_R] int64
    row_mask = rows < n_rows
    row_start = rows * dim  # [BLOCK_R] int64
    acc = tl.zeros([BLOCK_R, BLOCK_D], dtype=tl.float32)
    # D_STATIC >= 0 only under the interpreter (see _common.row_launch_config); a conditional
    # expression, not an assignment, which the interpreter would turn back into a tensor.
    for d0 in range(0, D_STATIC if D_STATIC >= 0 else dim, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)  # [BLOCK_D]
        offs = row_start[:, None] + cols[None, :]  # [BLOCK_R, BLOCK_D] int64
        if EVEN_D:
            mask = row_mask[:, None]  # [BLOCK_R, 1]: no column tail
        else:
            mask = row_mask[:, None] & (cols[None, :] < dim)
        mu = tl.load(mu_ptr + offs, mask=mask, other=0.0).to(tl.float32)  # [BLOCK_R, BLOCK_D]
        lv = tl.load(logvar_ptr + offs, mask=mask, other=0.0).to(tl.float32)  # [BLOCK_R, BLOCK_D]
        var = tl.exp(lv)
        acc += tl.where(mask, 1.0 + lv - mu * mu - var, 0.0)
        if HAS_GRAD:
            tl.store(grad_mu_ptr + offs, (grad_scale * mu).to(grad_mu_ptr.dtype.element_ty),
                     mask=mask)
            tl.store(grad_logvar_ptr + offs,
                     (grad_scale * 0.5 * (var - 1.0)).to(grad_logvar_ptr.dtype.element_ty),
                     mask=mask)
    kl = -0.5 * tl.sum(acc, axis=1)  # [BLOCK_R]
    tl.store(kl_rows_ptr + rows, kl, mask=row_mask)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, kl_rows: torch.Tensor,
                grad_mu: Optional[torch.Tensor], grad_logvar: Optional[torch.Tensor],
                grad_scale: float) -> None:
    """Per-row KL into ``kl_rows`` and, if ``grad_mu`` is given, the fused gradient.

    Args:
        mu: mean. # [rows, D]
        logvar: log-variance. # [rows, D]
        kl_rows: output, float32. # [rows]
        grad_mu: None or output in the input dtype. # [rows, D]
        grad_logvar: None (iff grad_mu is None) or output in the input dtype. # [rows, D]
        grad_scale: upstream gradient of each kl_rows entry (e.g. 1/rows for a mean).
    """
    rows, dim = mu.shape
    if rows == 0:
        return
    has_grad = grad_mu is not None
    if has_grad != (grad_logvar is not None):
        raise ValueError("grad_mu and grad_logvar must be given together")
    cfg = row_launch_config(_gaussian_kl_fwd_kernel, rows, dim)
    wrap(_gaussian_kl_fwd_kernel)[row_grid(rows, cfg["BLOCK_R"])](
        mu, logvar, kl_rows, grad_mu if has_grad else mu, grad_logvar if has_grad else logvar,
        float(grad_scale), rows, dim, HAS_GRAD=has_grad,
        **cfg)
