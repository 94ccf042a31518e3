# SPDX-License-Identifier: Apache-2.0
"""The method's settings: :class:`TrainingConfig` (critics and actor) and :class:`SamplingConfig`
(gradient-based latent optimization, for sampling and for transforms).

Both are dataclasses validated on construction (through :mod:`lcengine.validation`) and
round-trip through JSON with ``to_dict`` / ``from_dict``, which is how checkpoints store them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

from lcengine.validation import check_float, check_int, check_positive_float, check_probability

from .critics import DEFAULT_EMBED_DIM, DEFAULT_HIDDEN

_Config = TypeVar("_Config")


def _from_dict(cls: type[_Config], d: Mapping[str, Any]) -> _Config:
    """``cls(**d)``, rejecting keys that are not fields (a typo must not pass silently)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; expected some of {sorted(known)}")
    return cls(**dict(d))


@dataclass
class SamplingConfig:
    """Settings of gradient-based latent optimization (:func:`lcengine.optimize_latents`).

    The defaults (for sampling from the prior) were tuned on the demo application's VAE
    (``sigma_bar`` ~ 0.08): a large step size and a weak distance penalty let prior samples travel
    to the data, and ``tau_r = 0.9`` keeps them going until they are well inside the region the
    realism critic accepts (stopping at 0.5 leaves them on its border: worse FCD).

    Attributes:
        steps: maximum Adam updates per row.
        lr: Adam learning rate on latents.
        w_realism: weight of ``constraint_loss(D(z, y), 1)``.
        w_attr: weight of the masked attribute-critic loss.
        w_dist: weight of ``distance_penalty(z, z_start, sigma_bar)``.
        tau_r: a row stops once ``sigmoid(D(z, y)) > tau_r`` ...
        tau_a: ... and every requested attribute has confidence ``tau_a`` on its side.
    """

    steps: int = 300
    lr: float = 0.3
    w_realism: float = 1.0
    w_attr: float = 1.0
    w_dist: float = 0.001
    tau_r: float = 0.9
    tau_a: float = 0.5

    def __post_init__(self) -> None:
        check_int("steps", self.steps)
        self.lr = check_positive_float("lr", self.lr)
        for name in ("w_realism", "w_attr", "w_dist"):
            setattr(self, name, check_positive_float(name, getattr(self, name), allow_zero=True))
        self.tau_r = check_probability("tau_r", self.tau_r, low_open=True)
        self.tau_a = check_float("tau_a", self.tau_a, low=0.5, high=1.0, high_open=True)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SamplingConfig":
        return _from_dict(cls, d)


# Transforms stay closer to the input (10x the distance weight, smaller steps), stop as soon as
# the critic finds the edit realistic (tau_r 0.5) but demand a confident requested attribute
# (tau_a 0.99), so that the edit is visible rather than barely across the critic's boundary.
# Measured on the demo: w_dist 0.03 / 0.1 cut convergence within 300 steps to 90% / 76%
# without preserving the input better; 0.01 converges on 99%.
DEFAULT_TRANSFORM = SamplingConfig(steps=300, lr=0.05, w_dist=0.01, tau_r=0.5, tau_a=0.99)


@dataclass
class TrainingConfig:
    """Hyperparameters of the critics, the actor and their training.

    Defaults are the reference implementation's choices (Adam lr 1e-4, betas (0, 0.9),
    gradient penalty 10, 10 critic updates per actor update, lambda_dist 0.1, 10% raw prior
    samples among the fakes) except the width: 4 x 256 instead of 4 x 2048, so that training
    fits a few minutes of two CPU cores. An application with a short budget and a small
    ``sigma_bar`` raises the learning rates and lowers ``lambda_dist`` (the demo does).

    Attributes:
        hidden: hidden widths of the realism critic and the actor.
        embed_dim: width of their attribute embedding.
        activation: "relu" | "softplus" | "leaky_relu" for all networks.
        attribute_hidden: hidden widths of the attribute critic.
        batch_size: rows per block (the realism batch has three blocks; the actor batch two).
        attribute_batch_size: rows per attribute-critic batch.
        attribute_steps: attribute-critic updates.
        attribute_lr: its Adam learning rate (betas (0.9, 0.999)).
        realism_steps: realism-critic updates; the actor gets ``realism_steps // actor_every``.
        realism_lr: Adam learning rate of the realism critic.
        actor_lr: Adam learning rate of the actor.
        betas: Adam betas of the realism critic and the actor.
        gp_weight: weight of the WGAN-GP gradient penalty.
        prior_fake_prob: probability that a fake row is a raw prior sample instead of G(z, y).
        actor_every: critic updates per actor update.
        lambda_dist: weight of the actor's distance penalty.
        actor_attribute_weight: weight of the attribute-critic term in the actor's loss.
        log_every: record losses in the history every this many updates.
        seed: run seed; every noise stream and index draw derives from it.
    """

    hidden: tuple[int, ...] = DEFAULT_HIDDEN
    embed_dim: int = DEFAULT_EMBED_DIM
    activation: str = "relu"
    attribute_hidden: tuple[int, ...] = DEFAULT_HIDDEN
    batch_size: int = 128
    attribute_batch_size: int = 256
    attribute_steps: int = 3000
    attribute_lr: float = 1e-3
    realism_steps: int = 6000
    realism_lr: float = 1e-4
    actor_lr: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.9)
    gp_weight: float = 10.0
    prior_fake_prob: float = 0.1
    actor_every: int = 10
    lambda_dist: float = 0.1
    actor_attribute_weight: float = 1.0
    log_every: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        self.attribute_hidden = tuple(int(h) for h in self.attribute_hidden)
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        for name in ("batch_size", "attribute_batch_size", "actor_every", "log_every"):
            check_int(f"TrainingConfig.{name}", getattr(self, name), minimum=1)
        for name in ("attribute_steps", "realism_steps", "seed"):
            check_int(f"TrainingConfig.{name}", getattr(self, name))
        for name in ("attribute_lr", "realism_lr", "actor_lr"):
            setattr(self, name, check_positive_float(f"TrainingConfig.{name}", getattr(self, name)))
        for name in ("gp_weight", "lambda_dist", "actor_attribute_weight"):
            setattr(
                self,
                name,
                check_positive_float(
                    f"TrainingConfig.{name}", getattr(self, name), allow_zero=True
                ),
            )
        self.prior_fake_prob = check_float(
            "TrainingConfig.prior_fake_prob", self.prior_fake_prob, low=0.0, high=1.0
        )

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"], d["attribute_hidden"] = list(self.hidden), list(self.attribute_hidden)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainingConfig":
        return _from_dict(cls, d)


__all__ = ["DEFAULT_TRANSFORM", "SamplingConfig", "TrainingConfig"]
