# SPDX-License-Identifier: Apache-2.0
"""latent_adam_: in-place Adam on latents in one pass, with a per-row active mask."""

from __future__ import annotations

from typing import Optional

import torch

from ..reference import latent_adam_ref_
from ..validation import check_positive_float, check_probability
from ._common import (
    DTYPE_CODES,
    MAX_INT64,
    check_adam,
    check_int,
    check_same,
    check_tensor,
    is_tracing,
    native_fn,
    pick_backend,
    rows_and_dim,
    triton_fn,
)
from ._guard import (
    check_op_backend,
    check_op_contiguous,
    check_op_disjoint,
    check_op_int,
    check_op_like,
    check_op_tensor,
)


def _check_op_args(z, grad, exp_avg, exp_avg_sq, active, step, lr, beta1, beta2, eps, backend):
    """What the kernels rely on: four distinct contiguous buffers of one shape, dtype and
    device, a bool row mask, and hyper-parameters that give finite updates."""
    op = "latent_adam_"
    check_op_backend(op, backend)
    check_op_tensor(op, "z", z)
    for name, t in (("grad", grad), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        check_op_like(op, name, t, "z", z)
    for name, t in (("z", z), ("grad", grad), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        check_op_contiguous(op, name, t)
    if active is not None:
        if active.dtype != torch.bool or active.shape != z.shape[:-1] or active.device != z.device:
            raise ValueError(
                f"lcengine::latent_adam_: active must be a bool tensor of shape "
                f"{tuple(z.shape[:-1])} on {z.device}, got {active.dtype} "
                f"{tuple(active.shape)} on {active.device}"
            )
    check_op_disjoint(op, z=z, grad=grad, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq, active=active)
    check_op_int(op, "step", step, minimum=1, maximum=MAX_INT64)
    check_positive_float("lr", lr)
    check_probability("beta1", beta1)
    check_probability("beta2", beta2)
    check_positive_float("eps", eps)


@torch.library.custom_op("lcengine::latent_adam_", mutates_args=("z", "exp_avg", "exp_avg_sq"))
def _latent_adam_op(
    z: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    active: Optional[torch.Tensor],
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    backend: str,
) -> None:
    # ``step`` enters the schema as a SymInt, so a compiled training loop passes it as a graph
    # input; the bias corrections are formed here, in float64, when the op runs.
    _check_op_args(z, grad, exp_avg, exp_avg_sq, active, step, lr, beta1, beta2, eps, backend)
    bias_c1 = 1.0 - beta1**step
    bias_c2 = 1.0 - beta2**step
    rows, dim = rows_and_dim(z)
    active_u8 = None if active is None else active.contiguous().view(torch.uint8)  # [R]
    if backend == "triton":
        triton_fn("latent_adam_")(
            z.view(rows, dim),
            grad.view(rows, dim),
            exp_avg.view(rows, dim),
            exp_avg_sq.view(rows, dim),
            active_u8,
            lr,
            beta1,
            beta2,
            eps,
            bias_c1,
            bias_c2,
        )
    else:
        native_fn("latent_adam", z.device)(
            z.data_ptr(),
            grad.data_ptr(),
            exp_avg.data_ptr(),
            exp_avg_sq.data_ptr(),
            0 if active_u8 is None else active_u8.data_ptr(),
            rows,
            dim,
            lr,
            beta1,
            beta2,
            eps,
            bias_c1,
            bias_c2,
            DTYPE_CODES[z.dtype],
        )


@_latent_adam_op.register_fake
def _(z, grad, exp_avg, exp_avg_sq, active, step, lr, beta1, beta2, eps, backend):
    return None


def latent_adam_(
    z: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    step: int,
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    active: Optional[torch.Tensor] = None,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """One in-place Adam step on latents (torch.optim.Adam's formula, no weight decay).

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``z -= lr / (1 - b1^step) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)``, in one pass over
    memory. Rows whose ``active`` entry is False are left bit-for-bit untouched (z and both
    moments), which is how converged latents are frozen.

    Args:
        z: latents, updated in place. # [..., D]
        grad: gradient of the loss with respect to z. # [..., D]
        exp_avg: first moment, updated in place. # [..., D]
        exp_avg_sq: second moment, updated in place. # [..., D]
        step: number of this step, >= 1 (bias correction).
        lr: learning rate, > 0.
        betas: (beta1, beta2), each in [0, 1).
        eps: added to the denominator, > 0.
        active: optional per-row bool mask over the leading dims. # [...]
        backend: "auto" (default), "eager", "native" or "triton".

    Returns:
        ``z`` (the same tensor, updated).
    """
    for name, t in (("z", z), ("grad", grad), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        check_tensor(name, t)
        if name != "z":
            check_same(name, t, "z", z)
    check_int("step", step, minimum=1)
    lr, beta1, beta2, eps = check_adam(lr, betas, eps)
    # aliased state would be read after being written (a different result per backend). The
    # addresses are not known while tracing: there the registered op checks them when it runs.
    if not is_tracing(z):
        check_op_disjoint("latent_adam_", z=z, grad=grad, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq)
    if active is not None:
        if not isinstance(active, torch.Tensor) or active.dtype != torch.bool:
            raise TypeError(
                "active must be a bool tensor over the leading dims of z, got "
                f"{getattr(active, 'dtype', type(active).__name__)}"
            )
        if active.shape != z.shape[:-1]:
            raise ValueError(
                f"active must have shape {tuple(z.shape[:-1])} (one flag per row of "
                f"z), got {tuple(active.shape)}"
            )
        if active.device != z.device:
            raise ValueError(f"active is on {active.device} but z is on {z.device}")
    chosen = pick_backend(backend, z, ("z",))
    if chosen == "eager":
        return latent_adam_ref_(
            z, grad, exp_avg, exp_avg_sq, step, lr=lr, betas=(beta1, beta2), eps=eps, active=active
        )
    states = (z, exp_avg, exp_avg_sq)
    if all(t.is_contiguous() for t in states):
        _latent_adam_op(
            z, grad.contiguous(), exp_avg, exp_avg_sq, active, step, lr, beta1, beta2, eps, chosen
        )
    else:  # update contiguous copies, then write back: the caller's tensors stay the state
        zc, mc, vc = (t.contiguous() for t in states)
        _latent_adam_op(zc, grad.contiguous(), mc, vc, active, step, lr, beta1, beta2, eps, chosen)
        for dst, src in zip(states, (zc, mc, vc)):
            if dst is not src:
                dst.copy_(src)
    return z
