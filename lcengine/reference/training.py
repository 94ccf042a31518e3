# SPDX-License-Identifier: Apache-2.0
"""Eager autograd twins of the training steps (``lcengine.method.steps`` derives them by hand).

The math of ``lcengine.method.training.ConstraintTrainer`` as it stands: the realism critic's
WGAN-GP step through a double backward (``torch.autograd.grad(..., create_graph=True)``), the
attribute critic's and the actor's losses through plain autograd. Losses use the reference ops
(:func:`constraint_loss_ref`, :func:`distance_penalty_ref`), so every dtype (float64 for the
tests) and any activation runs here. Each function returns ``(grads, loss, parts)``: the
gradients w.r.t. ``net.parameters()`` of the trained network, in that order.
"""

from __future__ import annotations

import torch
from torch import nn

from .ops import constraint_loss_ref, distance_penalty_ref


def realism_loss_ref(
    critic: nn.Module,
    z_real: torch.Tensor,
    z_fake: torch.Tensor,
    z_mis: torch.Tensor,
    y_real: torch.Tensor,
    y_mis: torch.Tensor,
    differs: torch.Tensor,
    alpha: torch.Tensor,
    *,
    gp_weight: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The realism critic's loss, with the penalty's input gradient kept in the graph.

    Args:
        critic: ``D(z, y) -> [R]``.
        z_real, z_fake, z_mis: real, fake and mismatch blocks. # [B, D] each
        y_real: attributes of the real and the fake block. # [B, A]
        y_mis: borrowed attributes of the mismatch block. # [B, A]
        differs: 1 where the borrowed attributes differ from the row's own. # [B]
        alpha: interpolation weights. # [B, 1]
        gp_weight: weight of the gradient penalty.

    Returns:
        ``(loss, {"bce", "gp", "logits"})``.
    """
    b = z_real.shape[0]
    dt, dev = z_real.dtype, z_real.device
    z_all = torch.cat([z_real, z_fake, z_mis])  # [3B, D]
    y_all = torch.cat([y_real, y_real, y_mis])  # [3B, A]
    target = torch.cat(
        [torch.ones(b, dtype=dt, device=dev), torch.zeros(2 * b, dtype=dt, device=dev)]
    )
    weight = torch.cat([torch.ones(2 * b, dtype=dt, device=dev), differs.to(dt)])  # [3B]
    logits = critic(z_all, y_all)  # [3B]
    bce = constraint_loss_ref(logits, target, weight=weight)
    z_hat = (alpha * z_real + (1.0 - alpha) * z_fake).detach().requires_grad_(True)  # [B, D]
    d_hat = critic(z_hat, y_real)  # [B]
    (grad_hat,) = torch.autograd.grad(d_hat.sum(), z_hat, create_graph=True)  # [B, D]
    gp = ((grad_hat.norm(dim=1) - 1.0) ** 2).mean()
    return bce + gp_weight * gp, {"bce": bce, "gp": gp, "logits": logits}


def realism_step_grads_ref(critic: nn.Module, *batch: torch.Tensor, gp_weight: float) -> tuple:
    """Gradients of :func:`realism_loss_ref` w.r.t. ``critic.parameters()`` (double backward).

    Args:
        critic: ``D(z, y)``.
        batch: ``z_real, z_fake, z_mis, y_real, y_mis, differs, alpha`` as in
            :func:`realism_loss_ref`.
        gp_weight: weight of the gradient penalty.

    Returns:
        ``(grads, loss, parts)``.
    """
    loss, parts = realism_loss_ref(critic, *batch, gp_weight=gp_weight)
    grads = torch.autograd.grad(loss, list(critic.parameters()))
    return grads, loss.detach(), {k: v.detach() for k, v in parts.items()}


def attribute_step_grads_ref(critic: nn.Module, z: torch.Tensor, y: torch.Tensor) -> tuple:
    """Gradients of the attribute critic's loss, mean ``constraint_loss_ref(D_attr(z), y)``.

    Args:
        critic: ``D_attr(z) -> [B, A]``.
        z: latents. # [B, D]
        y: 0/1 attributes. # [B, A]

    Returns:
        ``(grads, loss, {"bce"})``.
    """
    logits = critic(z)  # [B, A]
    loss = constraint_loss_ref(logits, y.to(logits.dtype))
    grads = torch.autograd.grad(loss, list(critic.parameters()))
    return grads, loss.detach(), {"bce": loss.detach()}


def actor_loss_ref(
    actor: nn.Module,
    realism: nn.Module,
    attribute: nn.Module,
    z_in: torch.Tensor,
    y_in: torch.Tensor,
    sigma_bar: torch.Tensor,
    *,
    attribute_weight: float,
    lambda_dist: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``constraint_loss(D(z', y), 1) + attribute_weight * constraint_loss(D_attr(z'), y) +
    lambda_dist * distance_penalty(z', z, sigma_bar)`` with ``z' = actor(z, y)``.

    Args:
        actor: ``G(z, y) -> [N, D]``.
        realism, attribute: the critics.
        z_in: actor inputs. # [N, D]
        y_in: requested attributes. # [N, A]
        sigma_bar: per-dimension encoder scale. # [] or [D]
        attribute_weight, lambda_dist: loss weights (``attribute_weight`` 0 drops the term).

    Returns:
        ``(loss, {"realism", "attribute", "distance", "z_out"})``.
    """
    z_out = actor(z_in, y_in)  # [N, D]
    ones = torch.ones(len(z_in), dtype=z_out.dtype, device=z_out.device)  # [N]
    realism_loss = constraint_loss_ref(realism(z_out, y_in), ones)
    attribute_loss = (
        constraint_loss_ref(attribute(z_out), y_in.to(z_out.dtype))
        if attribute_weight > 0
        else z_out.new_zeros(())
    )
    distance = distance_penalty_ref(z_out, z_in, sigma_bar)
    loss = realism_loss + attribute_weight * attribute_loss + lambda_dist * distance
    parts = {"realism": realism_loss, "attribute": attribute_loss, "distance": distance}
    return loss, {**parts, "z_out": z_out}


def actor_step_grads_ref(
    actor: nn.Module,
    realism: nn.Module,
    attribute: nn.Module,
    z_in: torch.Tensor,
    y_in: torch.Tensor,
    sigma_bar: torch.Tensor,
    *,
    attribute_weight: float,
    lambda_dist: float,
) -> tuple:
    """Gradients of :func:`actor_loss_ref` w.r.t. ``actor.parameters()``.

    Returns:
        ``(grads, loss, parts)``.
    """
    loss, parts = actor_loss_ref(
        actor,
        realism,
        attribute,
        z_in,
        y_in,
        sigma_bar,
        attribute_weight=attribute_weight,
        lambda_dist=lambda_dist,
    )
    grads = torch.autograd.grad(loss, list(actor.parameters()))
    return grads, loss.detach(), {k: v.detach() for k, v in parts.items()}


__all__ = [
    "actor_loss_ref",
    "actor_step_grads_ref",
    "attribute_step_grads_ref",
    "realism_loss_ref",
    "realism_step_grads_ref",
]
