# SPDX-License-Identifier: Apache-2.0
"""A tiny synthetic latent-variable model and data set for fast method tests.

Latent D = 4; "data" x = [z, z0 * z1] in R^5 (so decode is not the identity); the encoder
inverts it exactly with a small fixed posterior scale. Real data lives in four clusters
(+-1.5, +-1.5, 0, 0); attributes a0 = z0 > 0, a1 = z1 > 0, a2 = z2 > 0.

:data:`TOY_APPLICATION` is the same toy as an application of run folders
(``lcengine.method.run``), so the generic ``fit``/``sample``/``transform`` commands can be
tested without any real data set.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from lcengine.method.config import SamplingConfig, TrainingConfig
from lcengine.method.latent_model import LatentModel
from lcengine.method.run import CONSTRAINTS_DIR, Run, write_run_file

if TYPE_CHECKING:  # loading the toy's decoder (ConditionalSampler) imports no training code
    from lcengine.method.constraints import LatentConstraints

LATENT_DIM = 4
NAMES = ("a0", "a1", "a2")
POSTERIOR_SCALE = 0.1
TOY_APPLICATION_PATH = "support.method_toys:TOY_APPLICATION"


def toy_encode(x: torch.Tensor):
    mu = x[:, :LATENT_DIM]  # [B, D]
    return mu, torch.full_like(mu, 2.0 * math.log(POSTERIOR_SCALE))


def toy_decode(z: torch.Tensor) -> torch.Tensor:
    return torch.cat([z, (z[:, 0] * z[:, 1])[:, None]], dim=1)  # [B, 5]


class ToyDecoder(torch.nn.Module):
    """:func:`toy_decode` as a module (what ``lcengine export`` traces)."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return toy_decode(z)


def toy_model() -> LatentModel:
    return LatentModel.from_callables(toy_encode, toy_decode, LATENT_DIM, data_shape=(5,))


def toy_attributes(z: np.ndarray) -> np.ndarray:
    return (z[:, :3] > 0).astype(np.int8)  # [N, 3]


def toy_data(n: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Real data x [N, 5] float32 and attributes [N, 3] int8."""
    rng = np.random.default_rng(seed)
    centers = np.array([[1.5, 1.5], [1.5, -1.5], [-1.5, 1.5], [-1.5, -1.5]])
    c = centers[rng.integers(0, 4, n)]
    z = np.zeros((n, LATENT_DIM))
    z[:, :2] = c + 0.3 * rng.standard_normal((n, 2))
    z[:, 2:] = 0.8 * rng.standard_normal((n, 2))
    x = toy_decode(torch.from_numpy(z).float()).numpy()
    return x.astype(np.float32), toy_attributes(z)


def tiny_training(**kw) -> TrainingConfig:
    base = dict(
        hidden=(32, 32),
        attribute_hidden=(32, 32),
        embed_dim=4,
        batch_size=32,
        attribute_batch_size=64,
        attribute_steps=40,
        realism_steps=40,
        log_every=5,
        realism_lr=1e-3,
        actor_lr=1e-3,
        lambda_dist=0.01,
    )
    base.update(kw)
    return TrainingConfig(**base)


def rule_positive_product(x: np.ndarray) -> np.ndarray:
    """Black box on decoded toy outputs: the product feature (not a latent coordinate)."""
    return x[:, 4] > 0.3


class ToyApplication:
    """The toy model as an application of run folders: attributes are measured exactly on the
    decoded outputs (their first three coordinates), zero-shot rules by name."""

    def default_config(
        self, *, fast: bool, seed: int, training_overrides: Mapping[str, Any]
    ) -> dict:
        steps = {"attribute_steps": 40, "realism_steps": 40, **training_overrides}
        return {"seed": seed, "rows": 256, "training": tiny_training(seed=seed, **steps).to_dict()}

    def prepare_run(
        self,
        folder: Path,
        config: Mapping[str, Any],
        *,
        cache_dir,
        use_cache,
        progress: bool,
        log,
        checkpoint_every: int = 0,
        device="cpu",
    ) -> Run:
        from lcengine.method.constraints import LatentConstraints

        folder = Path(folder)
        x, att = toy_data(int(config["rows"]), seed=int(config["seed"]))
        lc = LatentConstraints(
            toy_model(),
            NAMES,
            training=TrainingConfig.from_dict(config["training"]),
            sampling=SamplingConfig(steps=20, lr=0.1),
            transform=SamplingConfig(steps=20, lr=0.1),
            device=device,
        )
        write_run_file(folder, TOY_APPLICATION_PATH, config)
        lc.fit(
            x,
            att,
            progress=progress,
            checkpoint_dir=folder / CONSTRAINTS_DIR,
            checkpoint_every=checkpoint_every,
        )
        return Run(folder, self, TOY_APPLICATION_PATH, dict(config), lc, None)

    def load_model(self, folder: Path, config: Mapping[str, Any]) -> tuple[LatentModel, Any]:
        return toy_model(), None

    def load_decoder(self, folder: Path, config: Mapping[str, Any]) -> LatentModel:
        return LatentModel.from_decoder(ToyDecoder(), LATENT_DIM, data_shape=(5,))

    def zero_shot_rules(self):
        return {"prod": rule_positive_product}

    def training_data(self, run: Run) -> dict:
        """The run's training rows again (checkpoints hold none)."""
        x, att = toy_data(int(run.config["rows"]), seed=int(run.config["seed"]))
        return {"x": x, "attributes": att}

    def measure(self, run: Run, outputs: np.ndarray, names: Sequence[str]) -> np.ndarray:
        columns = {n: (outputs[:, i] > 0).astype(np.int8) for i, n in enumerate(NAMES)}
        columns.update({n: r(outputs).astype(np.int8) for n, r in run.constraints.rules().items()})
        return np.stack([columns[n] for n in names], axis=1)

    def example_inputs(self, run: Run, n: int) -> np.ndarray:
        return toy_data(n, seed=1)[0]

    def check_inputs(self, x: np.ndarray) -> np.ndarray:
        return x

    def updated_config(self, config: Mapping[str, Any], lc: LatentConstraints) -> dict:
        return {**config, "training": lc.training.to_dict()}


TOY_APPLICATION = ToyApplication()


def fit_toy_run(folder: Path) -> Path:
    """A toy run folder written by ``lcengine fit`` (torch's thread count is restored: the
    command sets its own)."""
    from lcengine.cli import main

    threads = torch.get_num_threads()
    try:
        argv = ["fit", "--run", str(folder), "--application", TOY_APPLICATION_PATH]
        if main([*argv, "--no-progress"]) != 0:
            raise RuntimeError(f"lcengine fit of the toy run {folder} failed")
    finally:
        torch.set_num_threads(threads)
    return Path(folder)


# -- decoder-only and spatial-latent toys ---------------------------------------------------


def toy_decoder_only_model() -> LatentModel:
    """The toy decoder alone (no encoder), like a GAN generator."""
    return LatentModel.from_decoder(toy_decode, LATENT_DIM, data_shape=(5,))


def toy_label_fn(x: np.ndarray) -> np.ndarray:
    """Labels decoded toy outputs exactly: a0..a2 = x0..x2 > 0. # [N, 5] -> [N, 3] int8"""
    return (x[:, :3] > 0).astype(np.int8)


SPATIAL_LATENT_SHAPE = (4, 2, 2)  # [C, H, W]: D = 16
SPATIAL_DATA_SHAPE = (1, 4, 4)


class ConvToyVAE(torch.nn.Module):
    """An untrained convolutional encoder/decoder with spatial latents ``[4, 2, 2]`` on
    ``[1, 4, 4]`` images (the user's functions see ``[B, C, H, W]`` latents)."""

    latent_shape = SPATIAL_LATENT_SHAPE
    data_shape = SPATIAL_DATA_SHAPE

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.enc = torch.nn.Conv2d(1, 8, 3, stride=2, padding=1)  # [B,1,4,4] -> [B,8,2,2]
        self.dec = torch.nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1)  # [B,4,2,2] -> [B,1,4,4]

    def encode(self, x: torch.Tensor):
        assert x.shape[1:] == SPATIAL_DATA_SHAPE
        h = self.enc(x)  # [B, 8, 2, 2]
        return h[:, :4], h[:, 4:].clamp(-4.0, 1.0)  # mu, logvar [B, 4, 2, 2] each

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        assert z.shape[1:] == SPATIAL_LATENT_SHAPE, z.shape
        return self.dec(z)  # [B, 1, 4, 4]


def spatial_label_fn(x: np.ndarray) -> np.ndarray:
    """Two attributes of ``[N, 1, 4, 4]`` images: top half brighter than the bottom; left half
    brighter than the right. # -> [N, 2] int8"""
    img = x[:, 0]  # [N, 4, 4]
    top = img[:, :2].mean((1, 2)) > img[:, 2:].mean((1, 2))
    left = img[:, :, :2].mean((1, 2)) > img[:, :, 2:].mean((1, 2))
    return np.stack([top, left], axis=1).astype(np.int8)


def spatial_data(n: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random ``[N, 1, 4, 4]`` float32 images and their :func:`spatial_label_fn` attributes."""
    x = np.random.default_rng(seed).standard_normal((n,) + SPATIAL_DATA_SHAPE).astype(np.float32)
    return x, spatial_label_fn(x)
