# SPDX-License-Identifier: Apache-2.0
"""Latent constraints (Engel, Hoffman & Roberts, ICLR 2018) on any latent-variable model.

The one object to use is :class:`LatentConstraints`::

    from lcengine.method import LatentConstraints, LatentModel

    model = LatentModel.from_module(my_vae)            # encode(x) -> (mu, logvar), decode(z)
    lc = LatentConstraints(model, attribute_names)
    lc.fit(train_x, train_attributes)                  # attribute critic, realism critic, actor
    samples = lc.sample("a !b", n=16, method="optimize")
    edits = lc.transform(x, "b")
    lc.add_zero_shot_constraint("c", rule)             # a rule on decoded samples, no labels
    lc.save("run/constraints")

Modules: :mod:`.constraints` (the facade; its generate and transform in
:mod:`.generation`), :mod:`.config`, :mod:`.latent_model`, :mod:`.critics`, :mod:`.training`,
:mod:`.sampling`, :mod:`.requests`, :mod:`.zeroshot`, :mod:`.baseline`, :mod:`.metrics`,
:mod:`.timing`, :mod:`.checkpoint`, :mod:`.io`, and run folders with their commands in
:mod:`.run` and :mod:`.commands`. Applications (data sets,
models, evaluators) live outside this package, under ``lcengine.apps``.
"""

from .config import DEFAULT_TRANSFORM, SamplingConfig, TrainingConfig
from .constraints import LatentConstraints
from .critics import Actor, AttributeCritic, RealismCritic, StackedAttributeCritic
from .latent_model import LatentModel, compute_sigma_bar
from .requests import RequestVocabulary, complete_requests, parse_request
from .sampling import (
    METHODS,
    OptimizeResult,
    SampleResult,
    TransformResult,
    constraint_satisfied,
    optimize_latents_eager,
)
from .training import ConstraintTrainer, TrainingData
from .zeroshot import ZeroShotConstraint, learn_zero_shot_constraint

__all__ = [
    "Actor",
    "AttributeCritic",
    "ConstraintTrainer",
    "DEFAULT_TRANSFORM",
    "LatentConstraints",
    "LatentModel",
    "METHODS",
    "OptimizeResult",
    "RealismCritic",
    "RequestVocabulary",
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
    "parse_request",
]
