# SPDX-License-Identifier: Apache-2.0
"""The vae_head baseline: a VAE trained with an attribute head on its latent, generating by
best-of-M selection of prior samples, at tiny size."""

import json
import re

import numpy as np
import pytest
import torch

import lcengine
from lcengine.apps.digits import vae_head
from lcengine.apps.digits.vae import MnistVAE
from lcengine.apps.digits.vae_head import (
    FAST,
    VAE_HEAD_STEM,
    VAEWithHead,
    has_vae_head_checkpoint,
    head_parameter_count,
    load_vae_head,
    save_vae_head,
    train_vae_head,
)

SMALL = {**FAST, "epochs": 15, "candidates": 64}  # 1,000 images: about a second


@pytest.fixture(scope="module")
def model(mnist):
    return train_vae_head(
        mnist.train_images[:1000], mnist.train_attributes[:1000], seed=0, progress=False, **SMALL
    )


def test_training_and_generation(model, mnist, monkeypatch):
    assert isinstance(model, VAEWithHead) and isinstance(model, MnistVAE) and not model.training
    assert len(model.history) == SMALL["epochs"]
    assert set(model.history[0]) == {
        "epoch",
        "loss",
        "recon",
        "kl",
        "head_bce",
        "head_accuracy",
        "seconds",
    }
    assert model.history[-1]["loss"] < model.history[0]["loss"]
    cfg = model.config()
    assert cfg["candidates"] == 64 and cfg["head_hidden"] == list(FAST["head_hidden"])
    json.dumps(cfg)
    target = mnist.heldout_attributes[:5]
    x = model.generate(target, seed=1)
    assert x.shape == (5, 28, 28) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(x, model.generate(target, seed=1))
    np.testing.assert_array_equal(x, model.generate(torch.from_numpy(target).bool(), seed=1))
    assert not np.array_equal(x, model.generate(target, seed=2))
    # batching does not change the rows: row r's candidates sit at offset r * M * D
    z = model.select_latents(target, seed=1)  # [5, D]
    monkeypatch.setattr(vae_head, "_CANDIDATE_ROWS", 2 * SMALL["candidates"])  # 2 rows a batch
    torch.testing.assert_close(model.select_latents(target, seed=1), z, rtol=0, atol=0)
    np.testing.assert_allclose(model.generate(target, seed=1), x, rtol=0, atol=1e-6)
    monkeypatch.undo()
    assert model.generate(target[:0], seed=0).shape == (0, 28, 28)


@torch.no_grad()
def test_the_head_learns_and_the_selection_follows_it(model, mnist):
    # the head reads the digit off the training latents (chance: 10%)
    mu, _ = model.encode(torch.from_numpy(mnist.train_images[:1000]))  # [1000, D]
    digits = model.head_logits(mu)[:, :10].argmax(1).numpy()
    assert (digits == mnist.train_digits[:1000]).mean() > 0.35
    # best-of-64 latents are far likelier targets, under the head, than plain prior samples
    target = mnist.heldout_attributes[:300]
    t = torch.from_numpy(target).float()  # [300, 15]
    chosen = model.select_latents(target, seed=0)  # [300, D]
    prior = lcengine.standard_normal((300, model.latent_dim), seed=99)  # [300, D]
    ll_chosen = model.head_log_likelihood(chosen, t)  # [300]
    ll_prior = model.head_log_likelihood(prior, t)  # [300]
    assert float(ll_chosen.mean()) > float(ll_prior.mean()) + 1.0
    want = target[:, :10].argmax(1)
    hit_chosen = (model.head_logits(chosen)[:, :10].argmax(1).numpy() == want).mean()
    hit_prior = (model.head_logits(prior)[:, :10].argmax(1).numpy() == want).mean()
    assert hit_chosen > hit_prior + 0.1


def test_save_load_round_trip_and_corruption(model, mnist, tmp_path):
    d = save_vae_head(model, tmp_path / "m")
    assert has_vae_head_checkpoint(d) and not has_vae_head_checkpoint(tmp_path)
    again = load_vae_head(d)
    assert again.config() == model.config() and again.history == model.history
    assert not again.training
    target = mnist.heldout_attributes[:7]
    np.testing.assert_array_equal(again.generate(target, seed=4), model.generate(target, seed=4))
    held = sum(t.numel() for t in again.state_dict().values())
    assert held == sum(t.numel() for t in MnistVAE(8, (128,)).state_dict().values()) + (
        head_parameter_count(8, FAST["head_hidden"])
    )

    record_path = d / f"{VAE_HEAD_STEM}.json"
    record = json.loads(record_path.read_text())
    weights = d / record["weights_file"]
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=re.escape(str(weights))):
        load_vae_head(d)
    weights.write_bytes(bytes(blob[:-5]) + bytes([blob[-5] ^ 0xFF]) + bytes(blob[-4:]))
    load_vae_head(d)  # restored
    record["config"]["head_hidden"] = [33]  # another architecture than the weights
    record_path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="does not match the configuration"):
        load_vae_head(d)
    record["config"]["candidates"] = 0
    record_path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="config.candidates"):
        load_vae_head(d)
    with pytest.raises(TypeError, match="model"):
        save_vae_head(MnistVAE(4, (8,)), tmp_path / "x")


def test_bad_inputs_name_the_argument(model, mnist):
    x, a = mnist.train_images[:8], mnist.train_attributes[:8]
    tiny = {"latent_dim": 2, "hidden": (8,), "head_hidden": (4,), "epochs": 1}
    cases = [
        ((x[:, :27], a), {}, ValueError, "images"),
        ((x[:1], a[:1]), {}, ValueError, "images must hold at least 2"),
        ((x + 1, a), {}, ValueError, "images"),
        ((x, a[:, 1:]), {}, ValueError, "attributes"),
        ((x, a[:7]), {}, ValueError, "attributes must have 8 rows"),
        ((x, a - 1), {}, ValueError, "attributes must hold only 0 and 1"),
        ((x, a), {"epochs": 0}, ValueError, "epochs"),
        ((x, a), {"batch_size": 0}, ValueError, "batch_size"),
        ((x, a), {"lr": 0.0}, ValueError, "lr"),
        ((x, a), {"head_weight": -1.0}, ValueError, "head_weight"),
        ((x, a), {"decoder_scale": 0.0}, ValueError, "decoder_scale"),
        ((x, a), {"candidates": 0}, ValueError, "candidates"),
        ((x, a), {"latent_dim": 0}, ValueError, "latent_dim"),
        ((x, a), {"head_hidden": "32"}, TypeError, "head_hidden"),
        ((x, a), {"head_hidden": (0,)}, ValueError, r"head_hidden\[0\]"),
        ((x, a), {"seed": -1}, ValueError, "seed"),
    ]
    for args, kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            train_vae_head(*args, progress=False, **{**tiny, **kwargs})
    with pytest.raises(ValueError, match="attributes"):
        model.generate(a[:, :14], seed=0)
    with pytest.raises(ValueError, match="attributes"):
        model.generate(a * 3, seed=0)
    with pytest.raises(ValueError, match="seed"):
        model.generate(a, seed=-1)
