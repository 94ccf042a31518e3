# SPDX-License-Identifier: Apache-2.0
"""The method's settings: :class:`TrainingConfig` (critics and actor) and :class:`SamplingConfig`
(gradient-based latent optimization, for sampling and for transforms).

Both are dataclasses validated on construction (through :mod:`lcengine.validation`) and
round-trip through JSON with ``to_dict`` / ``from_dict``, which is how checkpoints store them.
``from_dict`` checks every key it is given (type and range; widths at most
:data:`~lcengine.validation.MAX_WIDTH` in at most :data:`~lcengine.validation.MAX_LAYERS` layers,
batch sizes at most :data:`~lcengine.validation.MAX_ROWS`) and refuses unknown keys, raising a
``ValueError`` that names the file (``source``) and the key (``training.hidden[0]``); keys left
out take their defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, TypeVar

from lcengine.reference import ACTIVATIONS
from lcengine.validation import (
    MAX_INT64,
    MAX_ROWS,
    MAX_STEPS,
    check_float,
    check_int,
    check_keys,
    check_positive_float,
    check_probability,
    check_str,
    check_width,
    check_widths,
    config_errors,
)

from .critics import DEFAULT_EMBED_DIM, DEFAULT_HIDDEN

_Config = TypeVar("_Config")
Check = Callable[[str, Any], Any]  # (name, value) -> the value, normalized; raises if bad


def _steps(name: str, v: Any) -> int:
    return check_int(name, v, minimum=0, maximum=MAX_STEPS)


def _every(name: str, v: Any) -> int:
    return check_int(name, v, minimum=1, maximum=MAX_STEPS)


def _rows(name: str, v: Any) -> int:
    return check_int(name, v, minimum=1, maximum=MAX_ROWS)


def _seed(name: str, v: Any) -> int:
    return check_int(name, v, minimum=0, maximum=MAX_INT64)


def _lr(name: str, v: Any) -> float:
    return check_positive_float(name, v)


def _weight(name: str, v: Any) -> float:
    return check_positive_float(name, v, allow_zero=True)


def _activation(name: str, v: Any) -> str:
    return check_str(name, v, choices=ACTIVATIONS)


def _betas(name: str, v: Any) -> tuple[float, float]:
    if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)) or len(v) != 2:
        raise TypeError(f"{name} must be a pair of floats in [0, 1), got {v!r}")
    return (check_probability(f"{name}[0]", v[0]), check_probability(f"{name}[1]", v[1]))


def _check_fields(obj: Any, checks: Mapping[str, Check], prefix: str) -> None:
    """Checks (and normalizes in place) every field of a config dataclass."""
    for name, check in checks.items():
        setattr(obj, name, check(f"{prefix}{name}", getattr(obj, name)))


def _from_dict(
    cls: type[_Config],
    checks: Mapping[str, Check],
    d: Any,
    source: Optional[str],
    key: str,
) -> _Config:
    """``cls(**d)`` with every key checked under the name ``key.<field>`` and unknown keys
    refused; a bad value raises ``ValueError`` naming ``source`` (when given) and the key."""
    with config_errors(source):
        d = check_keys(key, d, checks, what=f"{cls.__name__} keys")
        return cls(**{k: checks[k](f"{key}.{k}", v) for k, v in d.items()})


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
        _check_fields(self, _SAMPLING_CHECKS, "SamplingConfig.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, source: Optional[str] = None, key: str = "sampling"
    ) -> "SamplingConfig":
        """Inverse of :meth:`to_dict`, every key checked; missing keys take their defaults.

        Args:
            d: the JSON object.
            source: where ``d`` was read from (a file path), put first in error messages.
            key: the name of ``d`` in that file (``"sampling"``, ``"transform"``), for messages.

        Raises:
            ValueError: not an object, an unknown key, or a value of the wrong type or out of
                range; the message names ``source`` and the key (``sampling.lr``).
        """
        return _from_dict(cls, _SAMPLING_CHECKS, d, source, key)


_SAMPLING_CHECKS: dict[str, Check] = {
    "steps": _steps,
    "lr": _lr,
    "w_realism": _weight,
    "w_attr": _weight,
    "w_dist": _weight,
    "tau_r": lambda n, v: check_probability(n, v, low_open=True),
    "tau_a": lambda n, v: check_float(n, v, low=0.5, high=1.0, high_open=True),
}


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
        _check_fields(self, _TRAINING_CHECKS, "TrainingConfig.")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"], d["attribute_hidden"] = list(self.hidden), list(self.attribute_hidden)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, source: Optional[str] = None, key: str = "training"
    ) -> "TrainingConfig":
        """Inverse of :meth:`to_dict`, every key checked; missing keys take their defaults.

        Args:
            d: the JSON object.
            source: where ``d`` was read from (a file path), put first in error messages.
            key: the name of ``d`` in that file, for messages.

        Raises:
            ValueError: not an object, an unknown key, or a value of the wrong type or out of
                range; the message names ``source`` and the key (``training.hidden[0]``).
        """
        return _from_dict(cls, _TRAINING_CHECKS, d, source, key)


_TRAINING_CHECKS: dict[str, Check] = {
    "hidden": check_widths,
    "embed_dim": check_width,
    "activation": _activation,
    "attribute_hidden": check_widths,
    "batch_size": _rows,
    "attribute_batch_size": _rows,
    "attribute_steps": _steps,
    "attribute_lr": _lr,
    "realism_steps": _steps,
    "realism_lr": _lr,
    "actor_lr": _lr,
    "betas": _betas,
    "gp_weight": _weight,
    "prior_fake_prob": lambda n, v: check_float(n, v, low=0.0, high=1.0),
    "actor_every": _every,
    "lambda_dist": _weight,
    "actor_attribute_weight": _weight,
    "log_every": _every,
    "seed": _seed,
}


__all__ = ["DEFAULT_TRANSFORM", "SamplingConfig", "TrainingConfig"]
