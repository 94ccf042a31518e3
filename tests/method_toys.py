# SPDX-License-Identifier: Apache-2.0
"""A tiny synthetic latent-variable model and data set for fast method tests.

Latent D = 4; "data" x = [z, z0 * z1] in R^5 (so decode is not the identity); the encoder
inverts it exactly with a small fixed posterior scale. Real data lives in four clusters
(+-1.5, +-1.5, 0, 0); attributes a0 = z0 > 0, a1 = z1 > 0, a2 = z2 > 0.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from lcengine.method.models import LatentModel
from lcengine.method.training import TrainingConfig

LATENT_DIM = 4
NAMES = ("a0", "a1", "a2")
POSTERIOR_SCALE = 0.1


def toy_encode(x: torch.Tensor):
    mu = x[:, :LATENT_DIM]  # [B, D]
    return mu, torch.full_like(mu, 2.0 * math.log(POSTERIOR_SCALE))


def toy_decode(z: torch.Tensor) -> torch.Tensor:
    return torch.cat([z, (z[:, 0] * z[:, 1])[:, None]], dim=1)  # [B, 5]


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
    base = dict(hidden=(32, 32), attribute_hidden=(32, 32), embed_dim=4, batch_size=32,
                attribute_batch_size=64, attribute_steps=40, realism_steps=40, log_every=5,
                realism_lr=1e-3, actor_lr=1e-3, lambda_dist=0.01)
    base.update(kw)
    return TrainingConfig(**base)
