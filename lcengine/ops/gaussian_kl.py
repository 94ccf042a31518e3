# SPDX-License-Identifier: Apache-2.0
"""gaussian_kl: KL(N(mu, exp(logvar)) || N(0, I)) per row, forward and gradient in one pass."""
from __future__ import annotations

from typing import Optional

import torch

from ..reference import gaussian_kl_ref
from ._common import (
    DTYPE_CODES,
    check_reduction,
    check_same,
    check_tensor,
    is_unit_grad,
    native_fn,
    needs_grad,
    pick_backend,
    ptr,
    rows_and_dim,
    triton_fn,
)
from ._reduce import finish_row_reduction, grad_scale_for, scale_saved_grad


@torch.library.custom_op("lcengine::gaussian_kl", mutates_args=())
def _gaussian_kl_op(mu: torch.Tensor, logvar: torch.Tensor, reduction: str, need_grad: bool,
                    backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    mu, logvar = mu.contiguous(), logvar.contiguous()  # [..., D]
    rows, dim = rows_and_dim(mu)
    kl_rows = torch.empty(rows, device=mu.device, dtype=torch.float32)  # [R]
    if need_grad:
        grad_mu, grad_logvar = torch.empty_like(mu), torch.empty_like(logvar)  # [..., D]
    else:
        grad_mu, grad_logvar = mu.new_empty(0), mu.new_empty(0)  # distinct: outputs must not alias
    scale = grad_scale_for(reduction, rows)
    if backend == "triton":
        triton_fn("gaussian_kl")(mu.view(rows, dim), logvar.view(rows, dim), kl_rows,
                                 grad_mu.view(rows, dim) if need_grad else None,
                                 grad_logvar.view(rows, dim) if need_grad else None, scale)
    else:
        native_fn("gaussian_kl", mu.device)(
            mu.data_ptr(), logvar.data_ptr(), kl_rows.data_ptr(),
            grad_mu.data_ptr() if need_grad else 0, grad_logvar.data_ptr() if need_grad else 0,
            scale, rows, dim, DTYPE_CODES[mu.dtype])
    out = finish_row_reduction(kl_rows, reduction, mu.shape[:-1], mu.dtype)
    return out, grad_mu, grad_logvar


@_gaussian_kl_op.register_fake
def _(mu, logvar, reduction, need_grad, backend):
    out = (mu.new_empty(mu.shape[:-1]) if reduction == "none" else mu.new_empty(()))
    if need_grad:
        return out, torch.empty_like(mu), torch.empty_like(logvar)
    return out, mu.new_empty(0), mu.new_empty(0)


def _setup_context(ctx, inputs, output):
    _, _, reduction, need_grad, _ = inputs
    _, grad_mu, grad_logvar = output
    ctx.save_for_backward(grad_mu, grad_logvar)
    ctx.need_grad = need_grad
    # the saved-gradient outputs take no gradient: without this, autograd would materialize two
    # full-size zero tensors for them on every backward
    ctx.mark_non_differentiable(grad_mu, grad_logvar)
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_out, _unused_mu, _unused_lv):
    if not ctx.need_grad:
        raise RuntimeError("lcengine.gaussian_kl: backward called on a forward that was run "
                           "without gradient tracking")
    grad_mu, grad_logvar = ctx.saved_tensors  # [..., D]: gradients for an upstream of one
    return (scale_saved_grad(grad_mu, grad_out), scale_saved_grad(grad_logvar, grad_out),
            None, None, None)


_gaussian_kl_op.register_autograd(_backward, setup_context=_setup_context)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, *, reduction: str = "mean",
                backend: Optional[str] = None) -> torch.Tensor:
    """KL divergence of diagonal Gaussians from the standard normal prior.

    Per row: ``-1/2 * sum_d (1 + logvar - mu^2 - exp(logvar))``, accumulated in float32. When a
    gradient is needed the kernel writes it in the same pass as the forward, so forward and
    backward together read ``mu`` and ``logvar`` once.

    Args:
        mu: posterior mean. # [..., D]
        logvar: posterior log-variance, same shape, dtype and device. # [..., D]
        reduction: "none" (per row, shape ``[...]``), "mean" over rows, or "sum".
        backend: "auto" (default), "eager", "native" or "triton".
    """
    check_tensor("mu", mu)
    check_tensor("logvar", logvar)
    check_same("logvar", logvar, "mu", mu)
    check_reduction(reduction)
    chosen = pick_backend(backend, mu, ("mu",))
    if chosen == "eager":
        return gaussian_kl_ref(mu, logvar, reduction=reduction)
    out, _, _ = _gaussian_kl_op(mu, logvar, reduction, needs_grad(mu, logvar), chosen)
    return out
