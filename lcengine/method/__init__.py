# SPDX-License-Identifier: Apache-2.0
"""Latent constraints (Engel, Hoffman & Roberts, ICLR 2018) on any latent-variable model.

The one object to use is :class:`LatentConstraints`::

    from lcengine.method import AttributeSpec, LatentConstraints, LatentModel

    model = LatentModel.from_module(my_vae)            # encode(x) -> (mu, logvar), decode(z)
    spec = AttributeSpec(binary=["smiling"], groups={"hair": ["black", "blond"]})
    lc = LatentConstraints(model, spec, device="auto")
    lc.fit(train_x, train_attributes)                  # or latent files, or a DataLoader
    samples = lc.sample("smiling hair=blond", 16, method="optimize")
    edits = lc.transform(x, "!smiling")
    lc.add_zero_shot_constraint("c", rule)             # a rule on decoded samples, no labels
    lc.save("run/constraints")

A GAN generator is ``LatentModel.from_decoder(generator)`` fitted with
:meth:`LatentConstraints.fit_decoder_only` on labelled prior samples.

Modules: :mod:`.constraints` (the facade; its generate and transform in
:mod:`.generation`), :mod:`.config`, :mod:`.latent_model`, :mod:`.critics`, :mod:`.training`,
:mod:`.sampling` (its method names, torch-free, in :mod:`.methods`), :mod:`.attributes`
(the declared attributes, :class:`AttributeSpec`), :mod:`.requests`, :mod:`.zeroshot`,
:mod:`.baseline`, :mod:`.metrics`, :mod:`.timing`, :mod:`.steps` (the hand-derived training
gradients), :mod:`.data` (devices and training-data sources), :mod:`.checkpoint`,
:mod:`.store`, :mod:`.io`, :mod:`.figures`, and run folders with their commands in :mod:`.run`
and :mod:`.commands`.
Applications (data sets, models, evaluators) live outside this package, under
``lcengine.apps``.

The names are imported on first access (PEP 562): ``import lcengine.method`` alone (what the
command parsers in :mod:`.commands` need) loads no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lcengine._lazy import lazy_package

if TYPE_CHECKING:  # the real imports, for type checkers and IDEs
    from .attributes import AttributeSpec
    from .config import DEFAULT_TRANSFORM, PRESETS, Preset, SamplingConfig, TrainingConfig
    from .constraints import LatentConstraints
    from .critics import Actor, AttributeCritic, RealismCritic, StackedAttributeCritic
    from .data import (
        LatentFiles,
        LatentSamples,
        LatentSource,
        encode_batches,
        label_latents,
        open_latents,
        resolve_device,
    )
    from .latent_model import EncoderUnavailableError, LatentModel, compute_sigma_bar
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
    "AttributeSpec",
    "ConstraintTrainer",
    "DEFAULT_TRANSFORM",
    "EncoderUnavailableError",
    "LatentConstraints",
    "LatentFiles",
    "LatentModel",
    "LatentSamples",
    "LatentSource",
    "METHODS",
    "OptimizeResult",
    "PRESETS",
    "Preset",
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
    "encode_batches",
    "label_latents",
    "learn_zero_shot_constraint",
    "open_latents",
    "optimize_latents_eager",
    "parse_request",
    "resolve_device",
]

_EXPORTS = {
    "AttributeSpec": ".attributes",
    "DEFAULT_TRANSFORM": ".config",
    "PRESETS": ".config",
    "Preset": ".config",
    "SamplingConfig": ".config",
    "TrainingConfig": ".config",
    "LatentConstraints": ".constraints",
    "Actor": ".critics",
    "AttributeCritic": ".critics",
    "RealismCritic": ".critics",
    "StackedAttributeCritic": ".critics",
    "LatentFiles": ".data",
    "LatentSamples": ".data",
    "label_latents": ".data",
    "EncoderUnavailableError": ".latent_model",
    "LatentSource": ".data",
    "encode_batches": ".data",
    "open_latents": ".data",
    "resolve_device": ".data",
    "LatentModel": ".latent_model",
    "compute_sigma_bar": ".latent_model",
    "RequestVocabulary": ".requests",
    "complete_requests": ".requests",
    "parse_request": ".requests",
    "METHODS": ".sampling",
    "OptimizeResult": ".sampling",
    "SampleResult": ".sampling",
    "TransformResult": ".sampling",
    "constraint_satisfied": ".sampling",
    "optimize_latents_eager": ".sampling",
    "ConstraintTrainer": ".training",
    "TrainingData": ".training",
    "ZeroShotConstraint": ".zeroshot",
    "learn_zero_shot_constraint": ".zeroshot",
}
_SUBMODULES = (
    "attributes",
    "baseline",
    "checkpoint",
    "commands",
    "config",
    "constraints",
    "critics",
    "data",
    "generation",
    "io",
    "latent_model",
    "methods",
    "metrics",
    "requests",
    "run",
    "sampling",
    "timing",
    "training",
    "zeroshot",
)
__getattr__, __dir__ = lazy_package(__name__, globals(), _EXPORTS, _SUBMODULES)
