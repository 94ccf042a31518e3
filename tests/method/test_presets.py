# SPDX-License-Identifier: Apache-2.0
"""The paper's scale as a preset: its figures, where each comes from, and a reduced-size run
end to end (widths / 64, steps / 1000) with LatentConstraints on synthetic latents."""

import math

import numpy as np
import pytest
import torch

from lcengine.method import PRESETS, AttributeSpec, LatentConstraints, LatentModel, TrainingConfig
from lcengine.method.config import preset

# The reduced size the end-to-end test runs at: every width (hidden layers, label embedding,
# latent dimension) / 64 and every step count / 1000: 4 x 32 networks, a 32-wide embedding,
# a 16-dimensional latent, 20 attribute-critic and 100 realism-critic updates (10 actor updates).
WIDTH, STEPS = 1 / 64, 1 / 1000


def test_the_paper_preset_is_the_paper_scale():
    p = preset("paper")
    t = TrainingConfig.preset("paper")
    assert p.latent_dim == 1024
    assert t.hidden == t.attribute_hidden == (2048,) * 4 and t.embed_dim == 2048
    assert t.activation == "relu" and t.betas == (0.0, 0.9) and t.actor_every == 10
    assert (t.realism_lr, t.actor_lr, t.gp_weight, t.lambda_dist) == (1e-4, 1e-4, 10.0, 0.1)
    assert t == p.training and t is not PRESETS["paper"].training  # a fresh copy
    # every figure says where it comes from: the paper or the authors' released notebook
    assert set(p.sources.values()) == {"paper", "notebook"}
    assert {k for k, v in p.sources.items() if v == "paper"} >= {"latent_dim", "hidden"}
    assert (t.realism_steps, t.attribute_steps, t.batch_size, t.attribute_lr) == (
        200_000,
        10_000,
        64,
        1e-4,
    )
    assert TrainingConfig.from_dict(t.to_dict()) == t
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; presets are \['paper'\]"):
        TrainingConfig.preset("huge")
    p.check_latent_dim(1024)
    with pytest.raises(ValueError, match="latent dimension 1024; this model has 16"):
        p.check_latent_dim(16)
    assert "seed" not in p.training_overrides() and p.training_overrides()["embed_dim"] == 2048


def test_scaled_divides_widths_and_steps():
    full, small = preset("paper"), preset("paper").scaled(width=WIDTH, steps=STEPS)
    t = small.training
    assert small.latent_dim == 16 and t.hidden == t.attribute_hidden == (32,) * 4
    assert t.embed_dim == 32 and (t.attribute_steps, t.realism_steps) == (10, 200)
    # learning rates, batches and loss weights stay those of the full preset
    for k in ("realism_lr", "actor_lr", "attribute_lr", "batch_size", "gp_weight", "betas"):
        assert getattr(t, k) == getattr(full.training, k)
    assert small.scale == (WIDTH, STEPS) and "width x0.015625" in small.name
    assert preset("paper").scaled(width=1e-9).training.hidden == (1,) * 4  # at least 1
    with pytest.raises(ValueError, match="width"):
        full.scaled(width=0)
    with pytest.raises(ValueError, match="steps"):
        full.scaled(steps=math.inf)


def _synthetic_latents(n: int, d: int, seed: int = 0):
    """Latents in four clusters of the first two dimensions; attributes: the cluster's side in
    dimension 0 as a group of two classes, and dimension 1 > 0 as a binary attribute."""
    rng = np.random.default_rng(seed)
    mu = 0.8 * rng.standard_normal((n, d)).astype(np.float32)
    centers = rng.choice([-1.5, 1.5], size=(n, 2))
    mu[:, :2] = centers + 0.3 * rng.standard_normal((n, 2))
    logvar = np.full((n, d), 2.0 * math.log(0.1), np.float32)
    right = (mu[:, 0] > 0).astype(np.int8)
    att = np.stack([1 - right, right, (mu[:, 1] > 0).astype(np.int8)], axis=1)
    return mu, logvar, att


def test_the_scaled_paper_preset_fits_end_to_end():
    p = preset("paper").scaled(width=WIDTH, steps=STEPS)
    d = p.latent_dim
    model = LatentModel.from_callables(
        lambda x: (x, torch.full_like(x, 2.0 * math.log(0.1))),
        lambda z: z,
        d,
        data_shape=(d,),
    )
    p.check_latent_dim(model.latent_dim)
    spec = AttributeSpec(binary=["up"], groups={"side": ["left", "right"]})
    mu, logvar, att = _synthetic_latents(512, d)
    lc = LatentConstraints(model, spec, training=p.training_config(seed=3))
    lc.fit(mu=mu, logvar=logvar, attributes=att, progress=False)
    t = lc.trainer
    assert (t.attribute_step, t.realism_step) == (10, 200) and lc.is_fitted
    assert [layer.out_features for layer in t.realism.layers[:-1]] == [32] * 4
    assert t.realism.y_embedding.out_features == 32
    assert t.attribute.layers[-1].out_features == spec.num_columns
    for method in ("actor", "optimize"):
        res = lc.sample("right up", 8, method=method, seed=1, steps=5)
        assert res.latents.shape == (8, d) and torch.isfinite(res.latents).all()
        assert res.attributes[:, :3].tolist() == [[0, 1, 1]] * 8
