# SPDX-License-Identifier: Apache-2.0
"""Eager reference of the fused latent optimizer: the autograd loop, written with the references.

The one eager loop of the project, written with :func:`constraint_loss_ref`,
:func:`distance_penalty_ref`, :func:`latent_adam_ref_` and plain torch: it serves
``lcengine.optimize_latents(backend="eager")`` and ``lcengine.method.sampling.
optimize_latents_eager`` (which adds the method's input checks and a progress bar).
Per step ``t`` (the global step count, used for Adam's bias correction), for the rows still
active:

    loss_r = w_r * BCE(D(z, y_r), 1) + w_a * sum_a mask_a * BCE(D_attr(z)_a, y_a)
             + w_d * mean_d log(1 + (z - z_start)^2) / sigma_bar^2

rows that already satisfy the stopping rule (``sigmoid(D) > tau_r`` and every masked attribute on
its requested side with confidence ``tau_a``) are frozen *before* the update; the others take one
Adam step. After the last step the rows still active are checked once more.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from .ops import constraint_loss_ref, distance_penalty_ref, latent_adam_ref_


def constraint_satisfied_ref(
    realism_logits: torch.Tensor,
    attribute_logits: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    *,
    tau_r: float,
    tau_a: float,
) -> torch.Tensor:
    """The per-row stopping rule.

    Args:
        realism_logits: ``D(z, y)``. # [B]
        attribute_logits: ``D_attr(z)``. # [B, A]
        y: requested values (0/1). # [B, A]
        mask: requested attributes. # [B, A] bool
        tau_r: realism probability to exceed.
        tau_a: confidence each requested attribute needs on its requested side.

    Returns:
        ``sigmoid(D) > tau_r`` and every masked attribute satisfied. # [B] bool
    """
    real_ok = torch.sigmoid(realism_logits) > tau_r  # [B]
    p = torch.sigmoid(attribute_logits)  # [B, A]
    attr_ok = torch.where(y > 0.5, p > tau_a, p < 1.0 - tau_a) | ~mask  # [B, A]
    return real_ok & attr_ok.all(dim=1)


def critic_losses_ref(
    z: torch.Tensor,
    anchor: torch.Tensor,
    y: torch.Tensor,
    y_real: torch.Tensor,
    weight: torch.Tensor,
    realism_critic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    attribute_critic: Callable[[torch.Tensor], torch.Tensor],
    sigma_bar: Union[float, torch.Tensor],
    *,
    w_realism: float,
    w_attr: float,
    w_dist: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The optimizer's per-row loss and both critics' logits.

    ``loss = w_r BCE(D(z, y_r), 1) + w_a sum_a weight_a BCE(D_attr(z)_a, y_a)
    + w_d mean_d log(1 + (z - anchor)^2) / sigma_bar^2``

    Args:
        z: latents (differentiable). # [B, D]
        anchor: the distance penalty's anchor. # [B, D]
        y: requested values. # [B, A]
        y_real: the columns the realism critic reads. # [B, A_r]
        weight: mask as floats. # [B, A]

    Returns:
        ``(loss [B], realism_logits [B], attribute_logits [B, A])``.
    """
    r_logits = realism_critic(z, y_real)  # [B]
    a_logits = attribute_critic(z)  # [B, A]
    loss = (
        w_realism * constraint_loss_ref(r_logits, torch.ones_like(r_logits), reduction="none")
        + w_attr * constraint_loss_ref(a_logits, y, weight=weight, reduction="none").sum(1)
        + w_dist * distance_penalty_ref(z, anchor, sigma_bar, reduction="none")
    )  # [B]
    return loss, r_logits, a_logits


def dense_step_ref(
    z: torch.Tensor,
    anchor: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    step: Union[int, torch.Tensor],
    y: torch.Tensor,
    mask: torch.Tensor,
    realism_critic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    attribute_critic: Callable[[torch.Tensor], torch.Tensor],
    sigma_bar: Union[float, torch.Tensor],
    *,
    w_realism: float = 1.0,
    w_attr: float = 1.0,
    w_dist: float = 0.1,
    tau_r: float = 0.5,
    tau_a: float = 0.5,
    lr: float = 0.05,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimizer step over every row, functional (no compaction, no Python branching on
    values): the form ``torch.compile`` takes as a whole graph. Rows that satisfy the stopping
    rule keep their latents and Adam state. ``y`` is what the realism critic reads too.

    Returns:
        ``(z, exp_avg, exp_avg_sq, satisfied)`` after the step. # [B, D] x3, [B] bool
    """
    z = z.detach().requires_grad_(True)  # [B, D]
    with torch.enable_grad():
        loss, r_logits, a_logits = critic_losses_ref(
            z,
            anchor,
            y,
            y,
            mask.to(z.dtype),
            realism_critic,
            attribute_critic,
            sigma_bar,
            w_realism=w_realism,
            w_attr=w_attr,
            w_dist=w_dist,
        )
        (grad,) = torch.autograd.grad(loss.sum(), z)  # [B, D]
    ok = constraint_satisfied_ref(
        r_logits.detach(), a_logits.detach(), y, mask, tau_r=tau_r, tau_a=tau_a
    )  # [B]
    z, m, v = z.detach().clone(), exp_avg.clone(), exp_avg_sq.clone()
    latent_adam_ref_(z, grad, m, v, step, lr=lr, betas=betas, eps=eps, active=~ok)
    return z, m, v, ok


def optimize_latents_ref(
    z_start: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    realism_critic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    attribute_critic: Callable[[torch.Tensor], torch.Tensor],
    sigma_bar: Union[float, torch.Tensor],
    *,
    w_realism: float = 1.0,
    w_attr: float = 1.0,
    w_dist: float = 0.1,
    tau_r: float = 0.5,
    tau_a: float = 0.5,
    steps: int = 300,
    lr: float = 0.05,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    realism_attributes: Optional[int] = None,
    on_step: Optional[Callable[[int, torch.Tensor], None]] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient-based latent optimization against both critics, stopping per row (eager).

    Inputs are taken as given (the public ``lcengine.optimize_latents`` validates them).

    Args:
        z_start: starting latents and anchor of the distance penalty. # [B, D]
        y: requested attribute values, 0/1. # [B, A]
        mask: requested attributes. # [B, A] bool
        realism_critic: ``D(z, y[:, :realism_attributes]) -> logits``. # [B]
        attribute_critic: ``D_attr(z) -> logits``. # [B, A]
        sigma_bar: scalar or per-dimension scale of the distance penalty. # [] or [D]
        w_realism, w_attr, w_dist: loss weights.
        tau_r, tau_a: stopping thresholds.
        steps: maximum Adam updates per row.
        lr, betas, eps: Adam hyper-parameters.
        realism_attributes: leading columns of ``y`` the realism critic reads (default: its
            ``num_attributes`` attribute, else all).
        on_step: called as ``on_step(t, converged)`` after each step that updated some row
            (a progress bar's hook; ``converged`` is the live [B] bool mask).

    Returns:
        ``(latents [B, D], converged [B] bool, steps [B] int64, realism_prob [B],
        attribute_prob [B, A])``; float32 (float64 when z_start is float64).
    """
    b = z_start.shape[0]
    num_attr = y.shape[1]
    # float32 like the method's loop; float64 stays float64 (for checks against fp32 rounding)
    ct = torch.float64 if z_start.dtype == torch.float64 else torch.float32
    y = y.to(ct)  # [B, A]
    mask = mask.to(torch.bool)  # [B, A]
    if realism_attributes is None:
        realism_attributes = int(getattr(realism_critic, "num_attributes", num_attr))
    y_real = y[:, :realism_attributes]  # [B, A_r]
    weight = mask.to(ct)  # [B, A]

    z = z_start.detach().to(ct).clone().contiguous()  # [B, D]
    anchor = z.clone()  # [B, D]
    exp_avg = torch.zeros_like(z)  # [B, D]
    exp_avg_sq = torch.zeros_like(z)  # [B, D]
    grad_full = torch.zeros_like(z)  # [B, D]
    active = torch.ones(b, dtype=torch.bool, device=z.device)  # [B]
    converged = torch.zeros(b, dtype=torch.bool, device=z.device)  # [B]
    steps_taken = torch.zeros(b, dtype=torch.int64, device=z.device)  # [B]

    for t in range(1, steps + 1):
        idx = active.nonzero().squeeze(1)  # [B_active]
        if idx.numel() == 0:
            break
        with torch.enable_grad():
            z_a = z[idx].requires_grad_(True)  # [B_active, D]
            loss_rows, r_logits, a_logits = critic_losses_ref(
                z_a,
                anchor[idx],
                y[idx],
                y_real[idx],
                weight[idx],
                realism_critic,
                attribute_critic,
                sigma_bar,
                w_realism=w_realism,
                w_attr=w_attr,
                w_dist=w_dist,
            )  # [B_active], [B_active], [B_active, A]
            ok = constraint_satisfied_ref(
                r_logits.detach(), a_logits.detach(), y[idx], mask[idx], tau_r=tau_r, tau_a=tau_a
            )  # [B_active]
            (grad,) = torch.autograd.grad(loss_rows.sum(), z_a)  # [B_active, D]
        done = idx[ok]
        active[done] = False
        converged[done] = True
        upd = idx[~ok]
        if upd.numel() == 0:
            break
        grad_full.zero_()
        grad_full[upd] = grad[~ok]
        latent_adam_ref_(
            z, grad_full, exp_avg, exp_avg_sq, t, lr=lr, betas=betas, eps=eps, active=active
        )
        steps_taken[upd] += 1
        if on_step is not None:
            on_step(t, converged)

    with torch.no_grad():
        r_logits = realism_critic(z, y_real)  # [B]
        a_logits = attribute_critic(z)  # [B, A]
    if active.any():  # rows that used every step: did the last update satisfy them?
        ok = constraint_satisfied_ref(r_logits, a_logits, y, mask, tau_r=tau_r, tau_a=tau_a)
        converged |= active & ok
    return z, converged, steps_taken, torch.sigmoid(r_logits), torch.sigmoid(a_logits)
