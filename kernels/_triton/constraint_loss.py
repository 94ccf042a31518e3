# SPDX-License-Identifier: Apache-2.0
"""Weighted binary cross-entropy with logits (the attribute-constraint loss), gradient fused."""
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


@triton.jit
def _constraint_loss_fwd_kernel(logits_ptr, target_ptr, weight_ptr, loss_elems_ptr,
                                loss_rows_ptr, grad_logits_ptr, grad_scale, n_rows, dim,
                                WEIGHT_MODE: tl.constexpr, HAS_ELEMS: tl.constexpr,
                                HAS_ROWS: tl.constexpr, HAS_GRAD: tl.constexpr,
                                EVEN_D: tl.constexpr, D_STATIC: tl.constexpr, BLOCK_R: tl.constexpr,
                                BLOCK_D: tl.constexpr):
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
        l = tl.load(logits_ptr + offs, mask=mask, other=0.0).to(tl.float32)  # [BLOCK_R, BLOCK_D]
        t = tl.load(target_ptr + offs, mask=mask, other=0.0).to(tl.float32)  # [BLOCK_R, BLOCK_D]
        e = tl.exp(-tl.abs(l))  # in (0, 1]: never overflows
        loss = tl.maximum(l, 0.0) - l * t + _log1p_nonneg(e)
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
            inv = 1.0 / (1.0 + e)
            sig = tl.where(l >= 0.0, inv, e * inv)
            g = grad_scale * (sig - t)
            if WEIGHT_MODE != 0:
                g = g * w
            tl.store(grad_logits_ptr + offs, g.to(grad_logits_ptr.dtype.element_ty), mask=mask)
    if HAS_ROWS:
        tl.store(loss_rows_ptr + rows, tl.sum(acc, axis=1), mask=row_mask)


def constraint_loss(logits: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor],
                    weight_mode: int, loss_elems: Optional[torch.Tensor],
                    loss_rows: Optional[torch.Tensor], grad_logits: Optional[torch.Tensor],
                    grad_scale: float) -> None:
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
    has_elems, has_rows, has_grad = (loss_elems is not None, loss_rows is not None,
                                     grad_logits is not None)
    if rows == 0 or not (has_elems or has_rows or has_grad):
        return
    cfg = row_launch_config(_constraint_loss_fwd_kernel, rows, dim)
    wrap(_constraint_loss_fwd_kernel)[row_grid(rows, cfg["BLOCK_R"])](
        logits, target, weight if weight is not None else logits,
        loss_elems if has_elems else logits, loss_rows if has_rows else logits,
        grad_logits if has_grad else logits, float(grad_scale), rows, dim,
        WEIGHT_MODE=weight_mode, HAS_ELEMS=has_elems, HAS_ROWS=has_rows, HAS_GRAD=has_grad,
        **cfg)
