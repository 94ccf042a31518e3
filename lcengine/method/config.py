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
    check_bool,
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
from .methods import AUTOCAST_MODES, OPTIMIZER_STARTS

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
        start: where the optimizer starts: ``"latents"``, the given latents themselves (prior
            samples; encodings for a transform), or ``"actor"``, the actor's output for them
            and the targets (the distance penalty is then measured from that output).
    """

    steps: int = 300
    lr: float = 0.3
    w_realism: float = 1.0
    w_attr: float = 1.0
    w_dist: float = 0.001
    tau_r: float = 0.9
    tau_a: float = 0.5
    start: str = "latents"

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
    "start": lambda n, v: check_str(n, v, choices=OPTIMIZER_STARTS),
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
        actor_attribute_weight: weight of the attribute-critic term in the actor's loss; 0 (the
            default) is the paper's objective: the realism critic and the distance penalty.
        log_every: record losses in the history every this many updates.
        seed: run seed; every noise stream and index draw derives from it.
        autocast: "off" | "bf16": "bf16" runs the three updates' matrix products in bfloat16
            under ``torch.autocast`` (weights, Adam state, losses and gradients stay float32).
            Meant for GPUs with bfloat16 tensor cores; CPUs without native bfloat16 arithmetic
            run it slower than float32.
        compile_steps: run the hand-derived steps of ReLU and leaky-ReLU networks through
            ``torch.compile`` (compiled on first use; other activations are unaffected). It
            pays off on long runs: see docs/benchmarks.md for the per-step gain and the
            compile time.
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
    actor_attribute_weight: float = 0.0
    log_every: int = 20
    seed: int = 0
    autocast: str = "off"
    compile_steps: bool = False

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

    @classmethod
    def preset(cls, name: str) -> "TrainingConfig":
        """The training configuration of a named :class:`Preset` (``TrainingConfig.preset(
        "paper")``, a fresh copy); the latent dimension the model must have is
        ``preset(name).latent_dim``, and ``preset(name).scaled(...)`` shrinks it for tests.

        Raises:
            ValueError: an unknown name (the message lists :data:`PRESETS`).
        """
        return preset(name).training


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
    "autocast": lambda n, v: check_str(n, v, choices=AUTOCAST_MODES),
    "compile_steps": check_bool,
}


def _scale(name: str, v: Any) -> float:
    return check_positive_float(name, v)


@dataclass(frozen=True)
class Preset:
    """A named training setup at a stated scale, with where each figure comes from.

    Attributes:
        name: the preset's name (a key of :data:`PRESETS`, or a scaled copy's description).
        latent_dim: the latent dimension the model must have (critics and actor read ``z`` of
            this width; :meth:`check_latent_dim` refuses another model).
        training: the :class:`TrainingConfig` (networks, batches, schedule, learning rates).
        sources: field -> where the figure comes from (``"paper"``: the ICLR 2018 paper;
            ``"notebook"``: the authors' released notebook, magenta/magenta-demos
            ``jupyter-notebooks/LatentConstraints.ipynb``).
        scale: ``(width, steps)`` factors applied by :meth:`scaled` (``(1.0, 1.0)``: full size).
    """

    name: str
    latent_dim: int
    training: "TrainingConfig"
    sources: Mapping[str, str]
    scale: tuple[float, float] = (1.0, 1.0)

    def scaled(self, *, width: float = 1.0, steps: float = 1.0) -> "Preset":
        """The same preset with every width (hidden layers, label embedding, latent
        dimension) multiplied by ``width`` and the step counts by ``steps`` (each rounded,
        at least 1); learning rates, batch sizes and loss weights are kept. For tests and
        smoke runs: ``preset("paper").scaled(width=1/64, steps=1/1000)``.

        Raises:
            ValueError: a factor that is not finite and > 0.
        """
        width, steps = _scale("width", width), _scale("steps", steps)

        def w(v: int) -> int:
            return max(1, round(v * width))

        def s(v: int) -> int:
            return max(1, round(v * steps))

        t = self.training
        training = dataclasses.replace(
            t,
            hidden=tuple(w(h) for h in t.hidden),
            attribute_hidden=tuple(w(h) for h in t.attribute_hidden),
            embed_dim=w(t.embed_dim),
            attribute_steps=s(t.attribute_steps),
            realism_steps=s(t.realism_steps),
            log_every=min(t.log_every, s(t.realism_steps)),
        )
        factors = (self.scale[0] * width, self.scale[1] * steps)
        return Preset(
            name=f"{self.name.split(' ')[0]} (width x{factors[0]:g}, steps x{factors[1]:g})",
            latent_dim=w(self.latent_dim),
            training=training,
            sources=dict(self.sources),
            scale=factors,
        )

    def training_config(self, **overrides: Any) -> "TrainingConfig":
        """A fresh :class:`TrainingConfig` of the preset with some fields replaced
        (``seed=...``); each replaced field is validated."""
        return dataclasses.replace(self.training, **overrides)

    def training_overrides(self) -> dict:
        """The preset's training fields as ``TrainingConfig.to_dict()`` entries, without
        ``seed`` and ``log_every`` (for an application's ``training_overrides``)."""
        d = self.training.to_dict()
        for k in ("seed", "log_every"):
            d.pop(k)
        return d

    def check_latent_dim(self, latent_dim: int) -> None:
        """Raises ``ValueError`` when a model's latent dimension is not the preset's."""
        if latent_dim != self.latent_dim:
            raise ValueError(
                f"preset {self.name!r} is for models with latent dimension {self.latent_dim}; "
                f"this model has {latent_dim}"
            )


# The paper's scale. Engel, Hoffman & Roberts (ICLR 2018) train the realism critic, the attribute
# critic and the actor as 4 x 2048 ReLU MLPs with a 2048-wide linear label embedding on the
# 1024-dimensional latent of their CelebA VAE ("paper"). The schedule is the released notebook's
# ("notebook": magenta/magenta-demos, jupyter-notebooks/LatentConstraints.ipynb, "Train D and G
# jointly" and "Train Attribute Classifier (D_attr) in z space"): realism critic and actor Adam
# 1e-4 with betas (0, 0.9), gradient penalty 10, 200,000 critic iterations with an actor update
# every 10, blocks of batch_size / 2 = 64 rows (real, fake, real with shuffled labels), 10% raw
# prior samples among the fakes, distance penalty 0.1; attribute critic 10,000 iterations of 64
# rows at Adam 1e-4 (default betas). The released critic and actor checkpoints are named after
# step 399,000, so they were trained longer than the notebook's loop.
_PAPER_SOURCES = {
    "latent_dim": "paper",
    "hidden": "paper",
    "attribute_hidden": "paper",
    "embed_dim": "paper",
    "activation": "paper",
    "realism_lr": "notebook",
    "actor_lr": "notebook",
    "betas": "notebook",
    "gp_weight": "notebook",
    "actor_every": "notebook",
    "lambda_dist": "notebook",
    "prior_fake_prob": "notebook",
    "actor_attribute_weight": "notebook",
    "attribute_lr": "notebook",
    "batch_size": "notebook",
    "attribute_batch_size": "notebook",
    "attribute_steps": "notebook",
    "realism_steps": "notebook",
}


def _paper_preset() -> Preset:
    return Preset(
        name="paper",
        latent_dim=1024,
        training=TrainingConfig(
            hidden=(2048, 2048, 2048, 2048),
            attribute_hidden=(2048, 2048, 2048, 2048),
            embed_dim=2048,
            activation="relu",
            batch_size=64,
            attribute_batch_size=64,
            attribute_steps=10_000,
            attribute_lr=1e-4,
            realism_steps=200_000,
            realism_lr=1e-4,
            actor_lr=1e-4,
            betas=(0.0, 0.9),
            gp_weight=10.0,
            prior_fake_prob=0.1,
            actor_every=10,
            lambda_dist=0.1,
            actor_attribute_weight=0.0,
        ),
        sources=_PAPER_SOURCES,
    )


#: Named presets: ``PRESETS["paper"]`` (see :func:`preset`).
PRESETS: dict[str, Preset] = {"paper": _paper_preset()}


def preset(name: str) -> Preset:
    """The named :class:`Preset` (a fresh copy).

    ``"paper"``: the scale of Engel et al. -- latent dimension 1024 (what the model must have),
    4 x 2048 ReLU critics and actor, label embedding 2048 (the paper); the released notebook's
    schedule: Adam 1e-4 with betas (0, 0.9), gradient penalty 10, 200,000 realism-critic
    updates with an actor update every 10, blocks of 64 rows, 10% prior fakes,
    ``lambda_dist`` 0.1; 10,000 attribute-critic updates of 64 rows at Adam 1e-4.
    ``Preset.sources`` says which figure comes from where.

    Raises:
        ValueError: an unknown name (the message lists the presets).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets are {sorted(PRESETS)}")
    p = PRESETS[name]
    return dataclasses.replace(p, training=dataclasses.replace(p.training))


__all__ = ["DEFAULT_TRANSFORM", "PRESETS", "Preset", "SamplingConfig", "TrainingConfig", "preset"]
