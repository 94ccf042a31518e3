# SPDX-License-Identifier: Apache-2.0
"""Public ops: validate, allocate, dispatch to the eager reference, _C or Triton."""

from .constraint_loss import constraint_loss
from .distance_penalty import distance_penalty
from .gaussian_kl import gaussian_kl
from .latent_adam import latent_adam_
from .optimize_latents import (
    OptimizeHyperParams,
    OptimizeResult,
    OptimizeTuning,
    optimize_latents,
    optimize_tuning,
)
from .reparameterize import reparameterize, standard_normal

__all__ = [
    "OptimizeHyperParams",
    "OptimizeResult",
    "OptimizeTuning",
    "constraint_loss",
    "distance_penalty",
    "gaussian_kl",
    "latent_adam_",
    "optimize_latents",
    "optimize_tuning",
    "reparameterize",
    "standard_normal",
]
