# SPDX-License-Identifier: Apache-2.0
"""constraint_loss: the critics' binary cross-entropy on logits, stable for any |logit|."""

from __future__ import annotations

from typing import Optional

import torch

from ..reference import constraint_loss_ref
from ._common import (
    DTYPE_CODES,
    check_reduction,
    check_tensor,
    native_fn,
    needs_grad,
    pick_backend,
    rows_and_dim,
    triton_fn,
)
from ._guard import check_op_backend, check_op_like, check_op_tensor
from ._reduce import finish_row_reduction, grad_scale_for, save_unit_grads, scaled_saved_grads

WEIGHT_NONE, WEIGHT_LAST_DIM, WEIGHT_FULL = 0, 1, 2


def _check_op_weight(logits: torch.Tensor, weight: Optional[torch.Tensor], mode: int) -> None:
    """The weight layout that ``mode`` announces: none, ``[A]``, or the logits' shape."""
    if mode not in (WEIGHT_NONE, WEIGHT_LAST_DIM, WEIGHT_FULL):
        raise ValueError(f"lcengine::constraint_loss: weight_mode must be 0, 1 or 2, got {mode}")
    if mode == WEIGHT_NONE:
        if weight is not None:
            raise ValueError("lcengine::constraint_loss: weight must be None with weight_mode 0")
        return
    expected = (logits.shape[-1],) if mode == WEIGHT_LAST_DIM else tuple(logits.shape)
    if weight is None:
        raise ValueError(f"lcengine::constraint_loss: weight_mode {mode} needs a weight")
    check_op_tensor("constraint_loss", "weight", weight)
    if tuple(weight.shape) != expected or weight.dtype != logits.dtype:
        raise ValueError(
            f"lcengine::constraint_loss: weight must have shape {expected} and dtype "
            f"{logits.dtype} for weight_mode {mode}, got {tuple(weight.shape)} {weight.dtype}"
        )
    if weight.device != logits.device:
        raise ValueError(
            f"lcengine::constraint_loss: weight is on {weight.device} but logits on {logits.device}"
        )


@torch.library.custom_op("lcengine::constraint_loss", mutates_args=())
def _constraint_loss_op(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor],
    weight_mode: int,
    reduction: str,
    need_grad: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    check_op_backend("constraint_loss", backend)
    check_op_tensor("constraint_loss", "logits", logits)
    check_op_like("constraint_loss", "target", target, "logits", logits)
    check_reduction(reduction)
    _check_op_weight(logits, weight, weight_mode)
    logits, target = logits.contiguous(), target.contiguous()  # [..., A]
    weight = weight.contiguous() if weight is not None else None  # [A] or [..., A]
    rows, dim = rows_and_dim(logits)
    elementwise = reduction == "none"
    loss_elems = torch.empty_like(logits) if elementwise else None  # [..., A]
    loss_rows = (
        None if elementwise else torch.empty(rows, device=logits.device, dtype=torch.float32)
    )  # [R]
    grad = torch.empty_like(logits) if need_grad else logits.new_empty(0)  # [..., A]
    scale = grad_scale_for(reduction, logits.numel())
    if backend == "triton":

        def as2d(t):
            return None if t is None else t.view(rows, dim)

        triton_fn("constraint_loss")(
            logits.view(rows, dim),
            target.view(rows, dim),
            None
            if weight is None
            else (weight if weight_mode == WEIGHT_LAST_DIM else weight.view(rows, dim)),
            weight_mode,
            as2d(loss_elems),
            loss_rows,
            grad.view(rows, dim) if need_grad else None,
            scale,
        )
    else:

        def ptr(t):
            return 0 if t is None else t.data_ptr()

        native_fn("constraint_loss", logits.device)(
            logits.data_ptr(),
            target.data_ptr(),
            ptr(weight),
            weight_mode,
            ptr(loss_elems),
            ptr(loss_rows),
            grad.data_ptr() if need_grad else 0,
            scale,
            rows,
            dim,
            DTYPE_CODES[logits.dtype],
        )
    if elementwise:
        out = loss_elems
    else:
        out = finish_row_reduction(
            loss_rows, reduction, logits.shape[:-1], logits.dtype, count=logits.numel()
        )
    return out, grad


@_constraint_loss_op.register_fake
def _(logits, target, weight, weight_mode, reduction, need_grad, backend):
    out = torch.empty_like(logits) if reduction == "none" else logits.new_empty(())
    return out, (torch.empty_like(logits) if need_grad else logits.new_empty(0))


def _setup_context(ctx, inputs, output):
    save_unit_grads(ctx, inputs[5], output[1])


def _backward(ctx, grad_out, _unused):
    (grad,) = scaled_saved_grads(ctx, grad_out, "constraint_loss")  # [..., A]
    return grad, None, None, None, None, None, None


_constraint_loss_op.register_autograd(_backward, setup_context=_setup_context)


def _prepare_target(target, logits: torch.Tensor) -> torch.Tensor:
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if target.shape != logits.shape:
        raise ValueError(
            f"target must have the shape of logits {tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    if target.device != logits.device:
        raise ValueError(f"target is on {target.device} but logits is on {logits.device}")
    if target.dtype.is_complex:
        raise TypeError(f"target must be bool, integer or floating, got {target.dtype}")
    if target.requires_grad:
        raise ValueError(
            "target must not require grad: constraint_loss differentiates logits "
            "only (detach the target)"
        )
    return target.to(logits.dtype)


def _prepare_weight(weight, logits: torch.Tensor):
    """(weight tensor or None, layout mode) with weight in logits' dtype."""
    if weight is None:
        return None, WEIGHT_NONE
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor or None, got {type(weight).__name__}")
    if weight.device != logits.device:
        raise ValueError(f"weight is on {weight.device} but logits is on {logits.device}")
    if weight.requires_grad:
        raise ValueError("weight must not require grad (detach it)")
    try:
        torch.broadcast_shapes(weight.shape, logits.shape)
    except RuntimeError:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} does not broadcast to logits "
            f"of shape {tuple(logits.shape)}"
        ) from None
    weight = weight.to(logits.dtype)
    if weight.dim() == 1 and weight.shape[0] == logits.shape[-1]:
        return weight, WEIGHT_LAST_DIM
    return weight.expand(logits.shape), WEIGHT_FULL


def constraint_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    weight: Optional[torch.Tensor] = None,
    reduction: str = "mean",
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Binary cross-entropy of a critic's logits against constraint targets.

    Elementwise ``-log sigmoid(l)`` where the constraint holds (target 1) and
    ``-log(1 - sigmoid(l))`` where it does not (target 0), computed as
    ``max(l, 0) - l * t + log1p(exp(-|l|))`` so it stays finite for any logit. ``weight`` masks
    or weights elements (e.g. the requested attributes of a multi-attribute critic). "mean"
    divides the weighted sum by the number of elements, as torch's BCE does. Only ``logits`` is
    differentiated.

    Args:
        logits: critic outputs. # [..., A]
        target: 0/1 (or soft) targets, same shape; bool, integer or floating. # [..., A]
        weight: optional weights broadcastable to ``logits``. # e.g. [A] or [..., A]
        reduction: "none" (elementwise, shape of logits), "mean" or "sum".
        backend: "auto" (default), "eager", "native" or "triton".
    """
    check_tensor("logits", logits)
    check_reduction(reduction)
    target = _prepare_target(target, logits)
    weight, mode = _prepare_weight(weight, logits)
    chosen = pick_backend(backend, logits, ("logits",))
    if chosen == "eager":
        return constraint_loss_ref(logits, target, weight=weight, reduction=reduction)
    out, _ = _constraint_loss_op(
        logits, target, weight, mode, reduction, needs_grad(logits), chosen
    )
    return out
