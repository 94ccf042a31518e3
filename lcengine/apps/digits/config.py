# SPDX-License-Identifier: Apache-2.0
"""The demo's settings: :class:`DemoConfig` and its two presets (:func:`demo_config`).

A run folder's ``run.json`` stores ``DemoConfig.to_dict()`` as its application config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from lcengine.method.config import SamplingConfig, TrainingConfig


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

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["training"] = self.training.to_dict()
        d["sampling"] = self.sampling.to_dict()
        d["transform"] = self.transform.to_dict()
        d["requests"], d["transform_changes"] = list(self.requests), list(self.transform_changes)
        d["vae"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.vae.items()}
        d["classifier"] = {
            k: list(v) if isinstance(v, tuple) else v for k, v in self.classifier.items()
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
    not meaningful. The full preset finishes in a few minutes on 2 CPU cores from an empty cache
    (VAE and classifier training included; 208 s measured on the 2-core development machine) and
    is what the report's figures mean.
    """
    if fast:
        return DemoConfig(
            name="fast",
            seed=seed,
            vae={"latent_dim": 8, "epochs": 3, "hidden": (128,), "lr": 3e-3, "batch_size": 128},
            classifier={"epochs": 1, "channels": (4, 8), "feature_dim": 32},
            training=TrainingConfig(
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
            ),
            sampling=SamplingConfig(steps=20, lr=0.3, w_dist=0.001, tau_r=0.9),
            transform=SamplingConfig(steps=20, lr=0.05, w_dist=0.01, tau_r=0.5, tau_a=0.99),
            eval_rows=48,
            requests=DEMO_REQUESTS[:2],
            request_samples=8,
            transform_changes=DEMO_TRANSFORMS[:2],
            transform_rows=6,
            zero_shot_samples=600,
            zero_shot_steps=30,
        )
    return DemoConfig(
        name="full",
        seed=seed,
        vae={"latent_dim": 16, "epochs": 40, "hidden": (512, 512), "batch_size": 128},
        classifier={"epochs": 8},
        # Faster than the reference's 1e-4 (a few thousand updates instead of tens of
        # thousands) and a weaker distance penalty: with sigma_bar ~ 0.08 the reference's
        # lambda_dist 0.1 makes a unit move cost ~15 nats and the actor barely moves.
        training=TrainingConfig(
            realism_steps=9000, realism_lr=3e-4, actor_lr=1e-3, lambda_dist=0.01, seed=seed
        ),
        sampling=SamplingConfig(steps=300, lr=0.3, w_dist=0.001, tau_r=0.9),
        transform=SamplingConfig(steps=300, lr=0.05, w_dist=0.01, tau_r=0.5, tau_a=0.99),
        eval_rows=500,
        requests=DEMO_REQUESTS,
        request_samples=32,
        transform_changes=DEMO_TRANSFORMS,
        transform_rows=64,
    )


def config_from_dict(d: Mapping[str, Any]) -> DemoConfig:
    """Inverse of :meth:`DemoConfig.to_dict` (the ``config`` of run.json)."""
    try:
        d = dict(d)
        d["training"] = TrainingConfig.from_dict(d["training"])
        d["sampling"] = SamplingConfig.from_dict(d["sampling"])
        d["transform"] = SamplingConfig.from_dict(d["transform"])
        d["requests"] = tuple(d.get("requests", ()))
        d["transform_changes"] = tuple(d.get("transform_changes", ()))
        known = {f.name for f in dataclasses.fields(DemoConfig)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown keys {unknown}")
        return DemoConfig(**d)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"bad run configuration: {exc}") from exc


__all__ = ["DEMO_REQUESTS", "DEMO_TRANSFORMS", "DemoConfig", "config_from_dict", "demo_config"]
