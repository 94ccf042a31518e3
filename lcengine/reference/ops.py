# SPDX-License-Identifier: Apache-2.0
"""Eager PyTorch references: the definition of what every kernel must compute.

Math is done in float32 (or float64 when the input is float64, for gradcheck); results are cast
back to the input dtype. Gradients come from autograd through these expressions.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .philox import philox_normal_ref

REDUCTIONS = ("none", "mean", "sum")


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _reduce_rows(per_row: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_row
    if reduction == "mean":
        return per_row.mean()
    if reduction == "sum":
        return per_row.sum()
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def standard_normal_ref(
    shape: Sequence[int],
    *,
    seed: int,
    offset: int = 0,
    device="cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """N(0, I) samples from the Philox stream at positions ``offset + flat index``."""
    numel = 1
    for s in shape:  # ints, or symbolic sizes while tracing (no int(): that would specialize)
        numel *= s
    return philox_normal_ref(numel, seed, offset, device).reshape(tuple(shape)).to(dtype)


def reparameterize_ref(
    mu: torch.Tensor, logvar: torch.Tensor, *, seed: int, offset: int = 0
) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps, eps from the Philox stream at ``offset + flat index``.

    Args:
        mu: mean. # [..., D]
        logvar: log-variance, same shape as mu. # [..., D]
    """
    ct = _compute_dtype(mu)
    eps = philox_normal_ref(mu.numel(), seed, offset, mu.device).reshape(mu.shape).to(ct)
    z = mu.to(ct) + torch.exp(0.5 * logvar.to(ct)) * eps  # [..., D]
    return z.to(mu.dtype)


def gaussian_kl_ref(
    mu: torch.Tensor, logvar: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) = -1/2 sum_d (1 + logvar - mu^2 - exp(logvar)) per row."""
    ct = _compute_dtype(mu)
    m, lv = mu.to(ct), logvar.to(ct)
    per_row = -0.5 * (1.0 + lv - m * m - torch.exp(lv)).sum(-1)  # [...]
    return _reduce_rows(per_row, reduction).to(mu.dtype)


def distance_penalty_ref(
    z: torch.Tensor, z_ref: torch.Tensor, sigma_bar, *, reduction: str = "mean"
) -> torch.Tensor:
    """Per row, mean over dims of log(1 + (z - z_ref)^2) / sigma_bar^2.

    Args:
        z: latents. # [..., D]
        z_ref: reference latents. # [..., D]
        sigma_bar: scalar or per-dimension average encoder scale. # [] or [D]
    """
    ct = _compute_dtype(z)
    sb = torch.as_tensor(sigma_bar, dtype=ct, device=z.device)  # [] or [D]
    diff = z.to(ct) - z_ref.to(ct)  # [..., D]
    per_row = (torch.log1p(diff * diff) / (sb * sb)).mean(-1)  # [...]
    return _reduce_rows(per_row, reduction).to(z.dtype)


def constraint_loss_ref(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    weight: Optional[torch.Tensor] = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """-log sigmoid(l) where target is 1, -log(1 - sigmoid(l)) where it is 0, times weight.

    Written in the stable form max(l, 0) - l t + log1p(exp(-|l|)). ``mean`` divides the weighted
    sum by the number of elements (torch's binary_cross_entropy_with_logits convention).
    """
    ct = _compute_dtype(logits)
    lg, t = logits.to(ct), target.to(ct)  # [..., A]
    # torch's own stable form max(l, 0) - l t + log1p(exp(-|l|)); unlike that expression written
    # out, its autograd gives sigmoid(l) - t at l == 0 too.
    loss = torch.nn.functional.binary_cross_entropy_with_logits(lg, t, reduction="none")
    if weight is not None:
        loss = loss * weight.to(ct)
    if reduction == "none":
        return loss.to(logits.dtype)
    if reduction == "mean":
        return loss.mean().to(logits.dtype)
    if reduction == "sum":
        return loss.sum().to(logits.dtype)
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


@torch.no_grad()
def latent_adam_ref_(
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
) -> torch.Tensor:
    """In-place Adam step of latents, the torch.optim.Adam formula; inactive rows untouched.

    Args:
        z, grad, exp_avg, exp_avg_sq: # [..., D]
        step: the step number after this update (>= 1), for bias correction.
        active: optional per-row mask. # [...] bool
    """
    beta1, beta2 = betas
    bias_c1 = 1.0 - beta1**step
    bias_c2 = 1.0 - beta2**step
    ct = _compute_dtype(z)
    g = grad.to(ct)
    m = exp_avg.to(ct) * beta1 + (1.0 - beta1) * g
    v = exp_avg_sq.to(ct) * beta2 + (1.0 - beta2) * g * g
    denom = v.sqrt() / (bias_c2**0.5) + eps
    new_z = z.to(ct) - (lr / bias_c1) * m / denom
    if active is None:
        z.copy_(new_z)
        exp_avg.copy_(m)
        exp_avg_sq.copy_(v)
    else:
        keep = active.to(torch.bool).unsqueeze(-1)  # [..., 1]
        z.copy_(torch.where(keep, new_z.to(z.dtype), z))
        exp_avg.copy_(torch.where(keep, m.to(exp_avg.dtype), exp_avg))
        exp_avg_sq.copy_(torch.where(keep, v.to(exp_avg_sq.dtype), exp_avg_sq))
    return z
