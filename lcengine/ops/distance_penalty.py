# SPDX-License-Identifier: Apache-2.0
"""distance_penalty: the actor's closeness term (1/sigma_bar^2) log(1 + (z' - z)^2)."""

from __future__ import annotations

import math
from typing import Optional, Union

import torch

from ..reference import distance_penalty_ref
from ._common import (
    DTYPE_CODES,
    check_reduction,
    check_same,
    check_tensor,
    native_fn,
    needs_grad,
    pick_backend,
    require,
    rows_and_dim,
    triton_fn,
)
from ._guard import check_op_backend, check_op_like, check_op_tensor
from ._reduce import finish_row_reduction, grad_scale_for, save_unit_grads, scaled_saved_grads


@torch.library.custom_op("lcengine::distance_penalty", mutates_args=())
def _distance_penalty_op(
    z: torch.Tensor,
    z_ref: torch.Tensor,
    inv_sigma_sq: torch.Tensor,
    reduction: str,
    need_grad: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    check_op_backend("distance_penalty", backend)
    check_op_tensor("distance_penalty", "z", z)
    check_op_like("distance_penalty", "z_ref", z_ref, "z", z)
    check_reduction(reduction)
    if (
        not isinstance(inv_sigma_sq, torch.Tensor)
        or inv_sigma_sq.dtype != torch.float32
        or inv_sigma_sq.dim() != 1
        or inv_sigma_sq.numel() not in (1, z.shape[-1])
        or inv_sigma_sq.device != z.device
    ):
        raise ValueError(
            f"lcengine::distance_penalty: inv_sigma_sq must be a float32 tensor of shape [1] or "
            f"[{z.shape[-1]}] on {z.device}"
        )
    z, z_ref = z.contiguous(), z_ref.contiguous()  # [..., D]
    inv_sigma_sq = inv_sigma_sq.contiguous()  # [D] or [1] float32
    rows, dim = rows_and_dim(z)
    per_dim = inv_sigma_sq.numel() > 1
    out_rows = torch.empty(rows, device=z.device, dtype=torch.float32)  # [R]
    grad_z = torch.empty_like(z) if need_grad else z.new_empty(0)  # [..., D]
    scale = grad_scale_for(reduction, rows)
    if backend == "triton":
        triton_fn("distance_penalty")(
            z.view(rows, dim),
            z_ref.view(rows, dim),
            inv_sigma_sq,
            per_dim,
            out_rows,
            grad_z.view(rows, dim) if need_grad else None,
            scale,
        )
    else:
        native_fn("distance_penalty", z.device)(
            z.data_ptr(),
            z_ref.data_ptr(),
            inv_sigma_sq.data_ptr(),
            per_dim,
            out_rows.data_ptr(),
            grad_z.data_ptr() if need_grad else 0,
            scale,
            rows,
            dim,
            DTYPE_CODES[z.dtype],
        )
    return finish_row_reduction(out_rows, reduction, z.shape[:-1], z.dtype), grad_z


@_distance_penalty_op.register_fake
def _(z, z_ref, inv_sigma_sq, reduction, need_grad, backend):
    out = z.new_empty(z.shape[:-1]) if reduction == "none" else z.new_empty(())
    return out, (torch.empty_like(z) if need_grad else z.new_empty(0))


def _setup_context(ctx, inputs, output):
    save_unit_grads(ctx, inputs[4], output[1])


def _backward(ctx, grad_out, _unused):
    (grad_z,) = scaled_saved_grads(ctx, grad_out, "distance_penalty")  # [..., D]
    grad_z_ref = -grad_z if ctx.needs_input_grad[1] and grad_z is not None else None
    return grad_z, grad_z_ref, None, None, None, None


_distance_penalty_op.register_autograd(_backward, setup_context=_setup_context)


def _inv_sigma_sq(sigma_bar, dim: int, device: torch.device) -> torch.Tensor:
    """Validate sigma_bar (scalar or [D], finite, > 0) and return 1/sigma_bar^2 in float32."""
    if isinstance(sigma_bar, bool):
        raise TypeError("sigma_bar must be a positive float or a tensor of shape [D], got bool")
    if isinstance(sigma_bar, (int, float)):
        if not (math.isfinite(sigma_bar) and sigma_bar > 0):
            raise ValueError(f"sigma_bar must be finite and > 0, got {sigma_bar}")
        return torch.full((1,), 1.0 / float(sigma_bar) ** 2, device=device, dtype=torch.float32)
    if not isinstance(sigma_bar, torch.Tensor):
        raise TypeError(
            f"sigma_bar must be a float or a torch.Tensor, got {type(sigma_bar).__name__}"
        )
    if not sigma_bar.dtype.is_floating_point:
        raise TypeError(f"sigma_bar must be a floating tensor, got {sigma_bar.dtype}")
    if sigma_bar.dim() > 1 or (sigma_bar.dim() == 1 and sigma_bar.numel() not in (1, dim)):
        raise ValueError(
            f"sigma_bar must be a scalar or have shape [{dim}] (one scale per latent "
            f"dimension), got shape {tuple(sigma_bar.shape)}"
        )
    if sigma_bar.device != device:
        raise ValueError(f"sigma_bar is on {sigma_bar.device} but z is on {device}")
    sb = sigma_bar.detach().to(torch.float32).reshape(-1)  # [D] or [1]
    ok = torch.isfinite(sb).all() & (sb > 0).all()  # [] bool
    require(ok, "sigma_bar must be finite and > 0 everywhere")
    return 1.0 / (sb * sb)


def distance_penalty(
    z: torch.Tensor,
    z_ref: torch.Tensor,
    sigma_bar: Union[float, torch.Tensor],
    *,
    reduction: str = "mean",
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Per row, the mean over dimensions of ``log(1 + (z - z_ref)^2) / sigma_bar^2``.

    The actor's penalty for moving a latent away from where it started, in units of the average
    encoder scale ``sigma_bar``. ``sigma_bar`` is a constant: it receives no gradient.

    Args:
        z: moved latents. # [..., D]
        z_ref: starting latents, same shape, dtype and device. # [..., D]
        sigma_bar: positive float, or per-dimension scales. # [] or [D]
        reduction: "none" (per row, shape ``[...]``), "mean" over rows, or "sum".
        backend: "auto" (default), "eager", "native" or "triton".
    """
    check_tensor("z", z)
    check_tensor("z_ref", z_ref)
    check_same("z_ref", z_ref, "z", z)
    check_reduction(reduction)
    inv_sigma_sq = _inv_sigma_sq(sigma_bar, z.shape[-1], z.device)
    chosen = pick_backend(backend, z, ("z",))
    if chosen == "eager":
        if isinstance(sigma_bar, torch.Tensor):
            sb = sigma_bar.detach()
        else:  # made on the device, as the reference would: no host-to-device copy to capture
            ct = torch.float64 if z.dtype == torch.float64 else torch.float32
            sb = torch.full((), float(sigma_bar), dtype=ct, device=z.device)
        return distance_penalty_ref(z, z_ref, sb, reduction=reduction)
    out, _ = _distance_penalty_op(z, z_ref, inv_sigma_sq, reduction, needs_grad(z, z_ref), chosen)
    return out
