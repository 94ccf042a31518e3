# SPDX-License-Identifier: Apache-2.0
"""The row losses, each a per-row float32 reduction with its gradient fused into the same pass.

- ``gaussian_kl``: KL(N(mu, exp(logvar)) || N(0, I)) per row.
- ``distance_penalty``: the actor's distance penalty (1/D) sum_d log(1 + (z - z_ref)^2) /
  sigma_bar_d^2 per row.
- ``constraint_loss``: weighted binary cross-entropy with logits (the attribute-constraint loss),
  elementwise and per-row.

One program owns BLOCK_R rows and loops over D in BLOCK_D chunks (``_common.row_launch_config``).
"""

# No `from __future__ import annotations`: the interpreter only recognizes real tl.constexpr
# annotations, not their strings.
from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import row_grid, row_launch_config, wrap
from ._math import _log1p_nonneg

WEIGHT_NONE = 0  # w = 1
WEIGHT_LAST_DIM = 1  # weight: [A], broadcast over rows
WEIGHT_FULL = 2  # weight: [rows, A]

# -------------------------------------------------------------------------------------------------
# gaussian_kl
# -------------------------------------------------------------------------------------------------


@triton.jit
def _gaussian_kl_fwd_kernel(
    mu_ptr,
    logvar_ptr,
    kl_rows_ptr,
    grad_mu_ptr,
    grad_logvar_ptr,
    grad_scale,
    n_rows,
    dim,
    HAS_GRAD: tl.constexpr,
    EVEN_D: tl.constexpr,
    D_STATIC: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
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
            tl.store(
                grad_mu_ptr + offs, (grad_scale * mu).to(grad_mu_ptr.dtype.element_ty), mask=mask
            )
            tl.store(
                grad_logvar_ptr + offs,
                (grad_scale * 0.5 * (var - 1.0)).to(grad_logvar_ptr.dtype.element_ty),
                mask=mask,
            )
    kl = -0.5 * tl.sum(acc, axis=1)  # [BLOCK_R]
    tl.store(kl_rows_ptr + rows, kl, mask=row_mask)


def gaussian_kl(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    kl_rows: torch.Tensor,
    grad_mu: Optional[torch.Tensor],
    grad_logvar: Optional[torch.Tensor],
    grad_scale: float,
) -> None:
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
        mu,
        logvar,
        kl_rows,
        grad_mu if has_grad else mu,
        grad_logvar if has_grad else logvar,
        float(grad_scale),
        rows,
        dim,
        HAS_GRAD=has_grad,
        **cfg,
    )


# -------------------------------------------------------------------------------------------------
# distance_penalty
# -------------------------------------------------------------------------------------------------


@triton.jit
def _distance_penalty_fwd_kernel(
    z_ptr,
    z_ref_ptr,
    inv_sigma_sq_ptr,
    out_rows_ptr,
    grad_z_ptr,
    inv_dim,
    grad_coef,
    n_rows,
    dim,
    SIGMA_PER_DIM: tl.constexpr,
    HAS_GRAD: tl.constexpr,
    EVEN_D: tl.constexpr,
    D_STATIC: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
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
            g = tl.div_rn(grad_coef * diff, 1.0 + sq) * inv_s  # IEEE division, as native
            tl.store(grad_z_ptr + offs, g.to(grad_z_ptr.dtype.element_ty), mask=mask)
    out = tl.sum(acc, axis=1) * inv_dim  # [BLOCK_R]
    tl.store(out_rows_ptr + rows, out, mask=row_mask)


def distance_penalty(
    z: torch.Tensor,
    z_ref: torch.Tensor,
    inv_sigma_sq: torch.Tensor,
    sigma_per_dim: bool,
    out_rows: torch.Tensor,
    grad_z: Optional[torch.Tensor],
    grad_scale: float,
) -> None:
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
        z,
        z_ref,
        inv_sigma_sq,
        out_rows,
        grad_z if has_grad else z,
        1.0 / dim,
        2.0 * float(grad_scale) / dim,
        rows,
        dim,
        SIGMA_PER_DIM=bool(sigma_per_dim),
        HAS_GRAD=has_grad,
        **cfg,
    )


# -------------------------------------------------------------------------------------------------
# constraint_loss
# -------------------------------------------------------------------------------------------------


@triton.jit
def _constraint_loss_fwd_kernel(
    logits_ptr,
    target_ptr,
    weight_ptr,
    loss_elems_ptr,
    loss_rows_ptr,
    grad_logits_ptr,
    grad_scale,
    n_rows,
    dim,
    WEIGHT_MODE: tl.constexpr,
    HAS_ELEMS: tl.constexpr,
    HAS_ROWS: tl.constexpr,
    HAS_GRAD: tl.constexpr,
    EVEN_D: tl.constexpr,
    D_STATIC: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Stable BCE with logits l, targets t, weights w (float32 math):

        loss = w * (max(l, 0) - l t + log1p(exp(-|l|)))
        grad = grad_scale * w * (sigmoid(l) - t),  sigmoid from the same e = exp(-|l|):
               1 / (1 + e) for l >= 0, e / (1 + e) otherwise (no overflow for any |l|).

    Writes loss (input dtype) with HAS_ELEMS, its per-row sum (float32) with HAS_ROWS, and the
    gradient (input dtype) with HAS_GRAD. WEIGHT_MODE: 0 none, 1 per column [A], 2 full [rows, A].
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
        lg = tl.load(logits_ptr + offs, mask=mask, other=0.0).to(tl.float32)  # [BLOCK_R, BLOCK_D]
        t = tl.load(target_ptr + offs, mask=mask, other=0.0).to(tl.float32)  # [BLOCK_R, BLOCK_D]
        e = tl.exp(-tl.abs(lg))  # in (0, 1]: never overflows
        loss = tl.maximum(lg, 0.0) - lg * t + _log1p_nonneg(e)
        if WEIGHT_MODE == 1:
            if EVEN_D:
                w = tl.load(weight_ptr + cols).to(tl.float32)[None, :]  # [1, BLOCK_D]
            else:
                w = tl.load(weight_ptr + cols, mask=cols < dim, other=0.0).to(tl.float32)[None, :]
            loss = loss * w
        elif WEIGHT_MODE == 2:
            w = tl.load(weight_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            loss = loss * w
        if HAS_ROWS:
            acc += tl.where(mask, loss, 0.0)
        if HAS_ELEMS:
            tl.store(loss_elems_ptr + offs, loss.to(loss_elems_ptr.dtype.element_ty), mask=mask)
        if HAS_GRAD:
            inv = tl.div_rn(1.0, 1.0 + e)  # IEEE division, as native
            sig = tl.where(lg >= 0.0, inv, e * inv)
            g = grad_scale * (sig - t)
            if WEIGHT_MODE != 0:
                g = g * w
            tl.store(grad_logits_ptr + offs, g.to(grad_logits_ptr.dtype.element_ty), mask=mask)
    if HAS_ROWS:
        tl.store(loss_rows_ptr + rows, tl.sum(acc, axis=1), mask=row_mask)


def constraint_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor],
    weight_mode: int,
    loss_elems: Optional[torch.Tensor],
    loss_rows: Optional[torch.Tensor],
    grad_logits: Optional[torch.Tensor],
    grad_scale: float,
) -> None:
    """Elementwise loss, per-row sums and/or gradient of the stable BCE-with-logits.

    Args:
        logits: critic logits. # [rows, A]
        target: targets in [0, 1]. # [rows, A]
        weight: None (mode 0), per-attribute (mode 1) # [A], or full (mode 2) # [rows, A]
        weight_mode: 0, 1 or 2 as above.
        loss_elems: None or output in the input dtype. # [rows, A]
        loss_rows: None or output, float32. # [rows]
        grad_logits: None or output in the input dtype. # [rows, A]
        grad_scale: upstream gradient of each elementwise loss.
    """
    rows, dim = logits.shape
    weight_mode = int(weight_mode)
    if weight_mode not in (WEIGHT_NONE, WEIGHT_LAST_DIM, WEIGHT_FULL):
        raise ValueError(f"weight_mode must be 0, 1 or 2, got {weight_mode}")
    if (weight is None) != (weight_mode == WEIGHT_NONE):
        raise ValueError("weight must be None exactly when weight_mode == 0")
    has_elems, has_rows, has_grad = (
        loss_elems is not None,
        loss_rows is not None,
        grad_logits is not None,
    )
    if rows == 0 or not (has_elems or has_rows or has_grad):
        return
    cfg = row_launch_config(_constraint_loss_fwd_kernel, rows, dim)
    wrap(_constraint_loss_fwd_kernel)[row_grid(rows, cfg["BLOCK_R"])](
        logits,
        target,
        weight if weight is not None else logits,
        loss_elems if has_elems else logits,
        loss_rows if has_rows else logits,
        grad_logits if has_grad else logits,
        float(grad_scale),
        rows,
        dim,
        WEIGHT_MODE=weight_mode,
        HAS_ELEMS=has_elems,
        HAS_ROWS=has_rows,
        HAS_GRAD=has_grad,
        **cfg,
    )
