# SPDX-License-Identifier: Apache-2.0
"""In-place Adam step on a batch of latents (the gradient-based latent optimizer), row-masked."""

# No `from __future__ import annotations`: the interpreter only recognizes real tl.constexpr
# annotations, not their strings.
import math
from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import row_grid, row_launch_config, wrap


@triton.jit
def _latent_adam_fwd_kernel(
    z_ptr,
    grad_ptr,
    exp_avg_ptr,
    exp_avg_sq_ptr,
    active_ptr,
    beta1,
    one_minus_beta1,
    beta2,
    one_minus_beta2,
    eps,
    step_size,
    sqrt_bias_c2,
    n_rows,
    dim,
    HAS_ACTIVE: tl.constexpr,
    EVEN_D: tl.constexpr,
    D_STATIC: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """torch.optim.Adam (no weight decay) on rows with active[r] != 0, float32 math:

        m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
        z -= (lr / bias_c1) * m / (sqrt(v) / sqrt(bias_c2) + eps)

    step_size = lr / bias_c1, sqrt_bias_c2 and 1 - b are folded on the host in float64. Inactive
    rows are masked out of every load and store, so they are neither read nor written. sqrt and
    division are IEEE-rounded (sqrt_rn, div_rn) to match the eager and native backends bit-closely.
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)  # [BLOCK_R] int64
    row_mask = rows < n_rows
    if HAS_ACTIVE:
        active = tl.load(active_ptr + rows, mask=row_mask, other=0)  # [BLOCK_R] uint8
        row_mask = row_mask & (active != 0)
    row_start = rows * dim  # [BLOCK_R] int64
    # D_STATIC >= 0 only under the interpreter (see _common.row_launch_config); a conditional
    # expression, not an assignment, which the interpreter would turn back into a tensor.
    for d0 in range(0, D_STATIC if D_STATIC >= 0 else dim, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)  # [BLOCK_D]
        offs = row_start[:, None] + cols[None, :]  # [BLOCK_R, BLOCK_D] int64
        if EVEN_D:
            mask = row_mask[:, None]  # [BLOCK_R, 1]: no column tail
        else:
            mask = row_mask[:, None] & (cols[None, :] < dim)
        z = tl.load(z_ptr + offs, mask=mask, other=0.0).to(tl.float32)  # [BLOCK_R, BLOCK_D]
        g = tl.load(grad_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        m = tl.load(exp_avg_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(exp_avg_sq_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        m = beta1 * m + one_minus_beta1 * g
        v = beta2 * v + one_minus_beta2 * (g * g)
        denom = tl.div_rn(tl.sqrt_rn(v), sqrt_bias_c2) + eps
        z = z - tl.div_rn(step_size * m, denom)
        tl.store(z_ptr + offs, z.to(z_ptr.dtype.element_ty), mask=mask)
        tl.store(exp_avg_ptr + offs, m.to(exp_avg_ptr.dtype.element_ty), mask=mask)
        tl.store(exp_avg_sq_ptr + offs, v.to(exp_avg_sq_ptr.dtype.element_ty), mask=mask)


def latent_adam_(
    z: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    active: Optional[torch.Tensor],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    bias_c1: float,
    bias_c2: float,
) -> None:
    """One in-place Adam step of ``z``, ``exp_avg`` and ``exp_avg_sq`` on the active rows.

    Args:
        z: latents, updated in place. # [rows, D]
        grad: gradient of the objective w.r.t. z. # [rows, D]
        exp_avg, exp_avg_sq: Adam moments, updated in place. # [rows, D]
        active: None (all rows) or uint8 row mask; rows with 0 are untouched. # [rows]
        lr, beta1, beta2, eps: Adam hyper-parameters.
        bias_c1, bias_c2: 1 - beta1^step and 1 - beta2^step for the step being taken.
    """
    rows, dim = z.shape
    if rows == 0 or dim == 0:
        return
    has_active = active is not None
    cfg = row_launch_config(_latent_adam_fwd_kernel, rows, dim)
    wrap(_latent_adam_fwd_kernel)[row_grid(rows, cfg["BLOCK_R"])](
        z,
        grad,
        exp_avg,
        exp_avg_sq,
        active if has_active else z,
        float(beta1),
        1.0 - float(beta1),
        float(beta2),
        1.0 - float(beta2),
        float(eps),
        float(lr) / float(bias_c1),
        math.sqrt(float(bias_c2)),
        rows,
        dim,
        HAS_ACTIVE=has_active,
        **cfg,
    )
