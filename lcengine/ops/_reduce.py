# SPDX-License-Identifier: Apache-2.0
"""Row-reduction bookkeeping shared by the loss ops whose kernels emit float32 row sums and
gradients pre-scaled for an upstream gradient of one."""

from __future__ import annotations

import torch

from ._common import is_unit_grad


def grad_scale_for(reduction: str, count: int) -> float:
    """d(reduced)/d(row value): 1/count for "mean", 1 otherwise."""
    return 1.0 / count if reduction == "mean" and count > 0 else 1.0


def finish_row_reduction(
    row_values: torch.Tensor, reduction: str, lead_shape, dtype: torch.dtype, count: int = 0
) -> torch.Tensor:
    """Reduce float32 per-row values ``[R]`` and cast to the input dtype.

    Args:
        row_values: float32 per-row results. # [R]
        reduction: "none", "mean" or "sum".
        lead_shape: the leading shape to restore for "none".
        dtype: output dtype.
        count: divisor for "mean" (defaults to the number of rows).
    """
    if reduction == "none":
        return row_values.reshape(lead_shape).to(dtype)
    total = row_values.sum()  # [] float32
    if reduction == "mean":
        total = total / (count or row_values.numel())
    return total.to(dtype)


def scale_saved_grad(saved: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """Chain rule for a saved unit gradient: ``saved * grad_out`` broadcast over the last dim.

    ``grad_out`` is a scalar (mean/sum) or has the leading shape (none). When it is a CPU tensor
    of exactly one (the usual ``loss.backward()``), ``saved`` is returned as is: no second pass
    over memory. Elsewhere (CUDA, tracing) the product costs one read of ``saved`` and one write,
    and never a host-device synchronization (:func:`~._common.is_unit_grad`).
    """
    if grad_out is None:  # gradients are not materialized: the output was not used
        return None
    if is_unit_grad(grad_out):
        return saved
    g = grad_out.to(saved.dtype)
    if g.dim() == 0:
        return saved * g
    if g.shape == saved.shape:
        return saved * g
    return saved * g.unsqueeze(-1)


def save_unit_grads(ctx, need_grad: bool, *grads: torch.Tensor) -> None:
    """setup_context of a loss op whose extra outputs are its pre-scaled gradients.

    Those outputs take no gradient themselves: marking them non-differentiable and not
    materializing grads keeps autograd from zero-filling a full-size buffer for each of them.
    """
    ctx.save_for_backward(*grads)
    ctx.need_grad = need_grad
    ctx.mark_non_differentiable(*grads)
    ctx.set_materialize_grads(False)


def refuse_double_backward(op: str) -> None:
    """Raises when a backward runs with ``create_graph=True``: the fused kernels' gradients are
    plain tensors, so a second derivative through them would be silently wrong."""
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        raise RuntimeError(
            f"lcengine.{op}: double backward (create_graph=True) is not supported by the fused "
            "kernels; use backend='eager' for higher-order gradients"
        )


def scaled_saved_grads(ctx, grad_out: torch.Tensor, op: str) -> list:
    """backward of such an op: each saved gradient times ``grad_out``."""
    refuse_double_backward(op)
    if not ctx.need_grad:
        raise RuntimeError(
            f"lcengine.{op}: backward called on a forward that was run without gradient tracking"
        )
    return [scale_saved_grad(g, grad_out) for g in ctx.saved_tensors]
