# SPDX-License-Identifier: Apache-2.0
"""The demo's settings: :class:`DemoConfig` and its two presets (:func:`demo_config`).

A run folder's ``run.json`` stores ``DemoConfig.to_dict()`` as its application config;
:func:`config_from_dict` reads it back, checking every key (type and range, widths at most
:data:`~lcengine.validation.MAX_WIDTH`, unknown keys refused) with a ``ValueError`` that names
the file and the key (``run.json: config.vae.hidden[0] must be ...``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from lcengine.method.config import SamplingConfig, TrainingConfig
from lcengine.validation import (
    MAX_INT64,
    MAX_ROWS,
    MAX_STEPS,
    check_float,
    check_int,
    check_keys,
    check_parameter_count,
    check_positive_float,
    check_str,
    check_str_list,
    check_width,
    check_widths,
    config_errors,
)

from .conditional import check_settings, default_settings

IMAGE_PIXELS = 28 * 28  # the digits' images (lcengine.apps.digits.data.IMAGE_SIDE squared)


@dataclass
class DemoConfig:
    """Everything the demo does, in one place (``demo_config(fast)`` gives the two presets).

    Attributes:
        name: "full" or "fast".
        seed: seed of the split, every model and every sample.
        heldout_fraction: fraction of each digit held out.
        vae: keyword arguments of :func:`~lcengine.apps.digits.vae.train_vae`.
        classifier: keyword arguments of
            :func:`~lcengine.apps.digits.classifier.train_pixel_classifier`.
        training, sampling, transform: the method's configurations.
        eval_rows: held-out rows per evaluation half (targets of the conditional samples and
            their real counterpart; the other half is the FCD reference).
        requests: attribute requests shown as sample grids.
        request_samples: samples per request and method.
        transform_changes: edits applied to held-out images.
        transform_rows: images per edit.
        zero_shot_rule: name of the rule in :data:`~lcengine.apps.digits.rules.DIGIT_RULES`.
        zero_shot_samples: prior samples labelled by the rule.
        zero_shot_steps: training steps of its critic.
        gan: keyword arguments of :func:`~lcengine.apps.digits.gan.train_gan` for the
            decoder-only model (a DCGAN-style generator); empty: the run has no decoder-only
            stage.
        gan_training: the training configuration of the generator's constraints (fitted with
            :meth:`~lcengine.method.constraints.LatentConstraints.fit_decoder_only`).
        gan_label_samples: prior samples of the generator labelled by the pixel classifier and
            the shape measurements (its training rows).
        conditional: ``{method: settings}`` of the conditional models the method is compared
            against (:data:`~lcengine.apps.digits.conditional.CONDITIONAL_METHODS`); empty:
            no comparison.
    """

    name: str = "full"
    seed: int = 0
    heldout_fraction: float = 0.2
    vae: dict = field(default_factory=dict)
    classifier: dict = field(default_factory=dict)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    transform: SamplingConfig = field(default_factory=SamplingConfig)
    eval_rows: int = 500
    requests: tuple[str, ...] = ()
    request_samples: int = 32
    transform_changes: tuple[str, ...] = ()
    transform_rows: int = 64
    zero_shot_rule: str = "top_heavy"
    zero_shot_samples: int = 20000
    zero_shot_steps: int = 1500
    gan: dict = field(default_factory=dict)
    gan_training: TrainingConfig = field(default_factory=TrainingConfig)
    gan_label_samples: int = 20000
    conditional: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, check in _CHECKS.items():
            setattr(self, name, check(f"DemoConfig.{name}", getattr(self, name)))

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["training"] = self.training.to_dict()
        d["gan_training"] = self.gan_training.to_dict()
        d["sampling"] = self.sampling.to_dict()
        d["transform"] = self.transform.to_dict()
        d["requests"], d["transform_changes"] = list(self.requests), list(self.transform_changes)
        d["vae"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.vae.items()}
        d["classifier"] = {
            k: list(v) if isinstance(v, tuple) else v for k, v in self.classifier.items()
        }
        d["gan"] = dict(self.gan)
        d["conditional"] = {
            m: {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}
            for m, kw in self.conditional.items()
        }
        return d


DEMO_REQUESTS = (
    "7 thick slant_right",
    "2 thin",
    "0 wide",
    "4 tall slant_left",
    "3 small_ink",
    "large_ink slant_right",
    "8",
)
DEMO_TRANSFORMS = ("thick", "thin", "slant_right", "slant_left", "wide", "narrow")


def demo_config(fast: bool = False, seed: int = 0) -> DemoConfig:
    """The demo's presets.

    ``fast`` (used by the tests) shrinks every stage to seconds; its figures are
    not meaningful. The full preset is what the report's figures mean. On the 2-core
    development machine (``lcengine demo --seeds 3``): 266 to 281 s per seed with every model
    cached (training the critics and the actor about 150 s, the generator's constraints about
    75 s); 468 and 549 s for a seed from an empty cache (VAE, classifier, generator and the
    conditional models trained, other jobs sharing the cores).
    """
    if fast:
        tiny = TrainingConfig(
            hidden=(32, 32),
            attribute_hidden=(32, 32),
            embed_dim=8,
            batch_size=32,
            attribute_batch_size=64,
            attribute_steps=60,
            realism_steps=60,
            realism_lr=1e-3,
            actor_lr=1e-3,
            lambda_dist=0.01,
            log_every=5,
            seed=seed,
        )
        return DemoConfig(
            name="fast",
            seed=seed,
            vae={"latent_dim": 8, "epochs": 3, "hidden": (128,), "lr": 3e-3, "batch_size": 128},
            classifier={"epochs": 1, "channels": (4, 8), "feature_dim": 32},
            training=tiny,
            sampling=SamplingConfig(steps=20, lr=0.3, w_dist=0.003, tau_r=0.9, start="actor"),
            transform=SamplingConfig(
                steps=20, lr=0.05, w_dist=0.001, tau_r=0.5, tau_a=0.99, start="actor"
            ),
            eval_rows=48,
            requests=DEMO_REQUESTS[:2],
            request_samples=8,
            transform_changes=DEMO_TRANSFORMS[:2],
            transform_rows=6,
            zero_shot_samples=600,
            zero_shot_steps=30,
            gan={"latent_dim": 8, "channels": 4, "epochs": 1},
            gan_training=dataclasses.replace(tiny, attribute_steps=40, realism_steps=40),
            gan_label_samples=400,
            conditional=default_settings(fast=True),
        )
    return DemoConfig(
        name="full",
        seed=seed,
        vae={"latent_dim": 16, "epochs": 40, "hidden": (512, 512), "batch_size": 128},
        classifier={"epochs": 8},
        # Faster than the reference's 1e-4 (a few thousand updates instead of tens of
        # thousands) and a weaker distance penalty: with sigma_bar ~ 0.08 the reference's
        # lambda_dist 0.1 makes a unit move cost ~15 nats and the actor barely moves. The actor
        # is also trained against the attribute critic (the paper's objective has weight 0),
        # with weight 3 chosen on the validation split (seed 0; `lcengine fit --run DIR
        # --actor-attribute-weight W`, then `python -m lcengine.apps.digits.tuning DIR`):
        # digit identity of the actor / of the optimizer from its output, 0: see
        # docs/method.md; 1: 95.8% / 96.4%; 2: 96.4% / 96.2%; 3: 97.8% / 97.4%; 5: 97.2% /
        # 95.8%; 10: 97.4% / 94.6% (the optimizer's FCD 52, 55, 63, 82, 84).
        training=TrainingConfig(
            realism_steps=9000,
            realism_lr=3e-4,
            actor_lr=1e-3,
            lambda_dist=0.01,
            actor_attribute_weight=3.0,
            seed=seed,
        ),
        # Both optimizers start from the actor's output, chosen on the validation split's 500
        # targets (seed 0, actor attribute weight 1; `python -m lcengine.apps.digits.tuning RUN`
        # prints the grid). Generation,
        # digit identity / all 15 right / FCD: from prior samples 88.6% / 61.2% / 129 with
        # every tau_a in 0.5-0.99 (the realism critic stops rows first), from the actor
        # 95.4% / 71.2% / 54 at the same settings, 96.4% / 74.2% / 52 with w_dist 0.003 and
        # tau_a 0.99 (97.6% of rows accepted); w_dist 0.01 reached 97.0% identity but left
        # half the rows unaccepted at 300 steps. Transforms, measured success per edit (thick,
        # thin, slant_right, slant_left, wide, narrow; 64 rows each): from the encoding
        # 86/53/78/75/56/78%, from the actor with tau_a 0.999 and w_dist 0.001
        # 89/92/88/95/72/94%; w_attr 3-10, lr 0.1, tau_r 0.9 or w_dist 0.0003 moved no edit
        # by more than 8 points.
        sampling=SamplingConfig(
            steps=300, lr=0.3, w_dist=0.003, tau_r=0.9, tau_a=0.99, start="actor"
        ),
        transform=SamplingConfig(
            steps=300, lr=0.05, w_dist=0.001, tau_r=0.5, tau_a=0.999, start="actor"
        ),
        eval_rows=500,
        requests=DEMO_REQUESTS,
        request_samples=32,
        transform_changes=DEMO_TRANSFORMS,
        transform_rows=64,
        # the decoder-only model: a DCGAN-style generator (15 epochs of 32-image batches, 86 s
        # on one thread of the 2-core machine, cached like the VAE; 10 epochs of 64 gave FCD
        # 563 against 303, training-split reference) with constraints fitted on 20,000
        # labelled prior samples. An actor update every 2 critic updates: with one every 10
        # (300 in all) its digit identity was 39% against 89% (training-split targets).
        gan={"latent_dim": 16, "channels": 32, "epochs": 15, "batch_size": 32},
        gan_training=TrainingConfig(
            attribute_steps=1500,
            realism_steps=3000,
            realism_lr=3e-4,
            actor_lr=1e-3,
            actor_every=2,
            lambda_dist=0.1,
            actor_attribute_weight=1.0,
            seed=seed,
        ),
        gan_label_samples=20000,
        conditional=default_settings(fast=False),
    )


def _rows(name: str, v: Any) -> int:
    return check_int(name, v, minimum=1, maximum=MAX_ROWS)


def _steps(name: str, v: Any) -> int:
    return check_int(name, v, minimum=0, maximum=MAX_STEPS)


def _check_vae(name: str, v: Any) -> dict:
    """Keyword arguments of ``train_vae`` (its ``seed`` and ``progress`` come from elsewhere)."""
    d = check_keys(name, v, _VAE_CHECKS, what="vae keys")
    out = {k: _VAE_CHECKS[k](f"{name}.{k}", x) for k, x in d.items()}
    # encoder 784 -> hidden -> 2 D, decoder D -> reversed(hidden) -> 784
    hidden, latent = out.get("hidden", (512, 512)), out.get("latent_dim", 16)
    enc = check_parameter_count(name, (IMAGE_PIXELS, *hidden, 2 * latent))
    check_parameter_count(name, (latent, *reversed(hidden), IMAGE_PIXELS), extra=enc)
    return out


def _check_classifier(name: str, v: Any) -> dict:
    """Keyword arguments of ``train_pixel_classifier`` (``seed``, ``progress``: elsewhere)."""
    d = check_keys(name, v, _CLASSIFIER_CHECKS, what="classifier keys")
    out = {k: _CLASSIFIER_CHECKS[k](f"{name}.{k}", x) for k, x in d.items()}
    c1, c2 = out.get("channels", (16, 32))
    feature = out.get("feature_dim", 128)
    # conv3x3 (1 -> c1), conv3x3 (c1 -> c2), linear (c2 * 7 * 7 -> feature), linear (-> 10)
    convs = 10 * c1 + (9 * c1 + 1) * c2
    check_parameter_count(name, (c2 * 7 * 7, feature, 10), extra=convs)
    return out


def _check_channels(name: str, v: Any) -> tuple[int, int]:
    widths = check_widths(name, v, max_layers=2)
    if len(widths) != 2:
        raise ValueError(f"{name} must hold the channels of the two conv layers, got {list(v)}")
    return widths


def _instance(cls: type) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if isinstance(v, cls):
            return v
        raise TypeError(f"{name} must be a {cls.__name__}, got {type(v).__name__} {v!r}")

    return check


_VAE_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "latent_dim": check_width,
    "epochs": _steps,
    "batch_size": _rows,
    "lr": check_positive_float,
    "hidden": check_widths,
    "decoder_scale": check_positive_float,
}
_CLASSIFIER_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "epochs": _steps,
    "batch_size": _rows,
    "lr": check_positive_float,
    "channels": _check_channels,
    "feature_dim": check_width,
}
_GAN_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "latent_dim": check_width,
    "channels": check_width,
    "epochs": _steps,
    "batch_size": _rows,
    "lr": check_positive_float,
}


def _check_gan(name: str, v: Any) -> dict:
    """Keyword arguments of ``train_gan`` (``seed``, ``progress``: elsewhere)."""
    d = check_keys(name, v, _GAN_CHECKS, what="gan keys")
    out = {k: _GAN_CHECKS[k](f"{name}.{k}", x) for k, x in d.items()}
    c, latent = out.get("channels", 32), out.get("latent_dim", 16)
    # linear D -> 2c x 7 x 7, deconv 4x4 2c -> c, deconv 4x4 c -> 1, batch norms
    convs = 16 * 2 * c * c + 16 * c + 4 * (2 * c * 49 + c)
    check_parameter_count(name, (latent, 2 * c * 49), extra=convs)
    return out


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "name": check_str,
    "seed": lambda n, v: check_int(n, v, minimum=0, maximum=MAX_INT64),
    "heldout_fraction": lambda n, v: check_float(
        n, v, low=0.0, high=1.0, low_open=True, high_open=True
    ),
    "vae": _check_vae,
    "classifier": _check_classifier,
    "training": _instance(TrainingConfig),
    "sampling": _instance(SamplingConfig),
    "transform": _instance(SamplingConfig),
    "eval_rows": _rows,
    "requests": check_str_list,
    "request_samples": _rows,
    "transform_changes": check_str_list,
    "transform_rows": _rows,
    "zero_shot_rule": check_str,
    "zero_shot_samples": _rows,
    "zero_shot_steps": _steps,
    "gan": _check_gan,
    "gan_training": _instance(TrainingConfig),
    "gan_label_samples": _rows,
    "conditional": check_settings,
}
_METHOD_CONFIGS = {
    "training": TrainingConfig,
    "sampling": SamplingConfig,
    "transform": SamplingConfig,
    "gan_training": TrainingConfig,
}
_REQUIRED = ("training", "sampling", "transform")


def config_from_dict(
    d: Mapping[str, Any], *, source: Optional[str] = None, key: str = "config"
) -> DemoConfig:
    """Inverse of :meth:`DemoConfig.to_dict` (the ``config`` of run.json), every key checked.

    ``training``, ``sampling`` and ``transform`` are required; other keys left out take their
    defaults (a ``config`` without ``gan`` has no decoder-only stage).

    Args:
        d: the JSON object.
        source: where ``d`` was read from (a file path), put first in error messages.
        key: the name of ``d`` in that file, for messages.

    Raises:
        ValueError: not an object, an unknown or missing key, or a value of the wrong type or out
            of range; the message names ``source`` and the key (``config.training.hidden[0]``).
    """
    with config_errors(source):
        d = check_keys(key, d, _CHECKS)
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise ValueError(f"{key}: missing keys {missing}")
        args = {}
        for name, value in d.items():
            if name in _METHOD_CONFIGS:
                args[name] = _METHOD_CONFIGS[name].from_dict(value, key=f"{key}.{name}")
            else:
                args[name] = _CHECKS[name](f"{key}.{name}", value)
        return DemoConfig(**args)


__all__ = ["DEMO_REQUESTS", "DEMO_TRANSFORMS", "DemoConfig", "config_from_dict", "demo_config"]
