# SPDX-License-Identifier: Apache-2.0
"""Actor distance penalty (1/D) sum_d log(1 + (z - z_ref)^2) / sigma_bar_d^2, gradient fused."""
# No `from __future__ import annotations`: the interpreter only recognizes real tl.constexpr
# annotations, not their strings.
from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import row_grid, row_launch_config, wrap
from ._math import _log1p_nonneg


@triton.jit
def _distance_penalty_fwd_kernel(z_ptr, z_ref_ptr, inv_sigma_sq_ptr, out_rows_ptr, grad_z_ptr,
                                 inv_dim, grad_coef, n_rows, dim,
                                 SIGMA_PER_DIM: tl.constexpr, HAS_GRAD: tl.constexpr,
                                 EVEN_D: tl.constexpr, D_STATIC: tl.constexpr,
                                 BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """out_rows[r] = (1/D) sum_d log1p((z - z_ref)^2) * inv_sigma_sq[d]   (float32).

    inv_sigma_sq has D entries with SIGMA_PER_DIM, else one. With HAS_GRAD, also
        grad_z = grad_scale * (1/D) * 2 (z - z_ref) / (1 + (z - z_ref)^2) * inv_sigma_sq[d]
    in the input dtype, where grad_coef = 2 * grad_scale / D is folded on the host.
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)  # [BLOCK_R] int64
    row_mask = rows < n_rows
    row_start = rows * dim  # [BLOCK_R] int64
    if not SIGMA_PER_DIM:
        inv_s = tl.load(inv_sigma_sq_ptr).to(tl.float32)  # scalar
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
        if SIGMA_PER_DIM:
            if EVEN_D:
                inv_s = tl.load(inv_sigma_sq_ptr + cols)[None, :]  # [1, BLOCK_D]
            else:
                inv_s = tl.load(inv_sigma_sq_ptr + cols, mask=cols < dim, other=0.0)[None, :]
        z = tl.load(z_ptr + offs, mask=mask, other=0.0).to(tl.float32)  # [BLOCK_R, BLOCK_D]
        zr = tl.load(z_ref_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        diff = z - zr
        sq = diff * diff
        acc += tl.where(mask, _log1p_nonneg(sq) * inv_s, 0.0)
        if HAS_GRAD:
            g = grad_coef * diff / (1.0 + sq) * inv_s
            tl.store(grad_z_ptr + offs, g.to(grad_z_ptr.dtype.element_ty), mask=mask)
    out = tl.sum(acc, axis=1) * inv_dim  # [BLOCK_R]
    tl.store(out_rows_ptr + rows, out, mask=row_mask)


def distance_penalty(z: torch.Tensor, z_ref: torch.Tensor, inv_sigma_sq: torch.Tensor,
                     sigma_per_dim: bool, out_rows: torch.Tensor, grad_z: Optional[torch.Tensor],
                     grad_scale: float) -> None:
    """Per-row distance penalty into ``out_rows`` and, if ``grad_z`` is given, its gradient.

    Args:
        z: latents. # [rows, D]
        z_ref: reference latents. # [rows, D]
        inv_sigma_sq: float32 1 / sigma_bar^2. # [D] if sigma_per_dim else [1]
        sigma_per_dim: whether inv_sigma_sq has one entry per dimension.
        out_rows: output, float32. # [rows]
        grad_z: None or output in the input dtype. # [rows, D]
        grad_scale: upstream gradient of each out_rows entry.
    """
    rows, dim = z.shape
    if rows == 0:
        return
    if dim == 0:  # mean over no dimensions, as torch's mean of an empty row
        out_rows.fill_(float("nan"))
        return
    has_grad = grad_z is not None
    cfg = row_launch_config(_distance_penalty_fwd_kernel, rows, dim)
    wrap(_distance_penalty_fwd_kernel)[row_grid(rows, cfg["BLOCK_R"])](
        z, z_ref, inv_sigma_sq, out_rows, grad_z if has_grad else z, 1.0 / dim,
        2.0 * float(grad_scale) / dim, rows, dim, SIGMA_PER_DIM=bool(sigma_per_dim),
        HAS_GRAD=has_grad, **cfg)
