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
    native_fn,
    needs_grad,
    pick_backend,
    rows_and_dim,
    triton_fn,
)
from ._guard import check_op_backend, check_op_like, check_op_tensor
from ._reduce import finish_row_reduction, grad_scale_for, save_unit_grads, scaled_saved_grads


@torch.library.custom_op("lcengine::gaussian_kl", mutates_args=())
def _gaussian_kl_op(
    mu: torch.Tensor, logvar: torch.Tensor, reduction: str, need_grad: bool, backend: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    check_op_backend("gaussian_kl", backend)
    check_op_tensor("gaussian_kl", "mu", mu)
    check_op_like("gaussian_kl", "logvar", logvar, "mu", mu)
    check_reduction(reduction)
    mu, logvar = mu.contiguous(), logvar.contiguous()  # [..., D]
    rows, dim = rows_and_dim(mu)
    kl_rows = torch.empty(rows, device=mu.device, dtype=torch.float32)  # [R]
    if need_grad:
        grad_mu, grad_logvar = torch.empty_like(mu), torch.empty_like(logvar)  # [..., D]
    else:
        grad_mu, grad_logvar = mu.new_empty(0), mu.new_empty(0)  # distinct: outputs must not alias
    scale = grad_scale_for(reduction, rows)
    if backend == "triton":
        triton_fn("gaussian_kl")(
            mu.view(rows, dim),
            logvar.view(rows, dim),
            kl_rows,
            grad_mu.view(rows, dim) if need_grad else None,
            grad_logvar.view(rows, dim) if need_grad else None,
            scale,
        )
    else:
        native_fn("gaussian_kl", mu.device)(
            mu.data_ptr(),
            logvar.data_ptr(),
            kl_rows.data_ptr(),
            grad_mu.data_ptr() if need_grad else 0,
            grad_logvar.data_ptr() if need_grad else 0,
            scale,
            rows,
            dim,
            DTYPE_CODES[mu.dtype],
        )
    out = finish_row_reduction(kl_rows, reduction, mu.shape[:-1], mu.dtype)
    return out, grad_mu, grad_logvar


@_gaussian_kl_op.register_fake
def _(mu, logvar, reduction, need_grad, backend):
    out = mu.new_empty(mu.shape[:-1]) if reduction == "none" else mu.new_empty(())
    if need_grad:
        return out, torch.empty_like(mu), torch.empty_like(logvar)
    return out, mu.new_empty(0), mu.new_empty(0)


def _setup_context(ctx, inputs, output):
    save_unit_grads(ctx, inputs[3], output[1], output[2])


def _backward(ctx, grad_out, _unused_mu, _unused_lv):
    grad_mu, grad_logvar = scaled_saved_grads(ctx, grad_out, "gaussian_kl")  # [..., D]
    return grad_mu, grad_logvar, None, None, None


_gaussian_kl_op.register_autograd(_backward, setup_context=_setup_context)


def gaussian_kl(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    *,
    reduction: str = "mean",
    backend: Optional[str] = None,
) -> torch.Tensor:
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
