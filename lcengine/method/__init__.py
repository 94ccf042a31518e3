# SPDX-License-Identifier: Apache-2.0
"""Latent constraints (Engel, Hoffman & Roberts, ICLR 2018): the method on top of lcengine's ops.

The one object to use is :class:`LatentConstraints`::

    from lcengine.method import LatentConstraints, LatentModel

    model = LatentModel.from_module(my_vae)            # encode(x) -> (mu, logvar), decode(z)
    lc = LatentConstraints(model, attribute_names)
    lc.fit(train_x, train_attributes)                  # attribute critic, realism critic, actor
    samples = lc.sample("7 thick", n=16, method="optimize")
    edits = lc.transform(x, "slant_right")
    lc.add_zero_shot_constraint("top_heavy", rule)     # a rule on decoded samples, no labels
    lc.save("run/constraints")

Modules: :mod:`.critics` (networks), :mod:`.training`, :mod:`.sampling` (the reference latent
optimizer), :mod:`.zeroshot`, :mod:`.pipeline`; the embedded data set, model wrapper, evaluation
and baseline in :mod:`.data`, :mod:`.models`, :mod:`.evaluation`, :mod:`.baseline`; the demo and
CLI in :mod:`.demo`, :mod:`.report`, :mod:`.commands`.
"""
from .critics import Actor, AttributeCritic, RealismCritic, StackedAttributeCritic
from .models import LatentModel, compute_sigma_bar
from .pipeline import (
    METHODS,
    LatentConstraints,
    SampleResult,
    SamplingConfig,
    TransformResult,
)
from .sampling import OptimizeResult, complete_requests, constraint_satisfied, optimize_latents_eager
from .training import ConstraintTrainer, TrainingConfig, TrainingData
from .zeroshot import DIGIT_RULES, ZeroShotConstraint, learn_zero_shot_constraint

__all__ = [
    "Actor",
    "AttributeCritic",
    "ConstraintTrainer",
    "DIGIT_RULES",
    "LatentConstraints",
    "LatentModel",
    "METHODS",
    "OptimizeResult",
    "RealismCritic",
    "SampleResult",
    "SamplingConfig",
    "StackedAttributeCritic",
    "TrainingConfig",
    "TrainingData",
    "TransformResult",
    "ZeroShotConstraint",
    "complete_requests",
    "compute_sigma_bar",
    "constraint_satisfied",
    "learn_zero_shot_constraint",
    "optimize_latents_eager",
]
