# SPDX-License-Identifier: Apache-2.0
"""Eager PyTorch references for every lcengine kernel (imported by tests and benchmarks)."""

from .critics import ACTIVATIONS, LEAKY_SLOPE, CriticMLP, activation_ref
from .ops import (
    REDUCTIONS,
    constraint_loss_ref,
    distance_penalty_ref,
    gaussian_kl_ref,
    latent_adam_ref_,
    reparameterize_ref,
    standard_normal_ref,
)
from .optimize import (
    constraint_satisfied_ref,
    critic_losses_ref,
    dense_step_ref,
    optimize_latents_ref,
)
from .philox import philox_first_two_ref, philox_normal_ref
from .training import (
    actor_loss_ref,
    actor_step_grads_ref,
    attribute_step_grads_ref,
    realism_loss_ref,
    realism_step_grads_ref,
)

__all__ = [
    "ACTIVATIONS",
    "LEAKY_SLOPE",
    "CriticMLP",
    "REDUCTIONS",
    "activation_ref",
    "actor_loss_ref",
    "actor_step_grads_ref",
    "attribute_step_grads_ref",
    "constraint_loss_ref",
    "constraint_satisfied_ref",
    "critic_losses_ref",
    "dense_step_ref",
    "distance_penalty_ref",
    "gaussian_kl_ref",
    "latent_adam_ref_",
    "optimize_latents_ref",
    "philox_first_two_ref",
    "philox_normal_ref",
    "realism_loss_ref",
    "realism_step_grads_ref",
    "reparameterize_ref",
    "standard_normal_ref",
]
