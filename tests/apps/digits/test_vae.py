# SPDX-License-Identifier: Apache-2.0
"""The digits' MLP VAE: through LatentModel, training with lcengine's ops, checkpoints."""

import json
import os

import numpy as np
import pytest
import torch

import lcengine
from lcengine.apps.digits.vae import (
    VAE_CONFIG_FILE,
    MnistVAE,
    load_vae,
    save_vae,
    train_vae,
)
from lcengine.method import io
from lcengine.method.latent_model import LatentModel


@pytest.fixture(scope="module")
def images(mnist):
    return mnist.train_images[:512]


def _weights(d):
    """The weights file the current record of a VAE folder names."""
    return d / json.loads((d / VAE_CONFIG_FILE).read_text())["weights_file"]


def _small_vae(latent_dim=4, seed=0):
    torch.manual_seed(seed)
    return MnistVAE(latent_dim=latent_dim, hidden=(32,))


def test_from_module_with_default_vae(images):
    model = LatentModel.from_module(_small_vae())
    assert model.latent_dim == 4 and model.data_shape == (28, 28)
    mu, logvar = model.encode(images[:5])  # numpy input is accepted
    assert mu.shape == logvar.shape == (5, 4) and mu.dtype == torch.float32
    x = model.decode(mu).detach()
    assert x.shape == (5, 28, 28) and 0 <= float(x.min()) and float(x.max()) <= 1


@torch.no_grad()
def _reconstruction_error(vae, images):
    """Per-pixel errors of reconstructions from the posterior mean. # [N, 28, 28] -> dict"""
    model = LatentModel.from_module(vae)
    x = torch.from_numpy(images)  # [N, 28, 28]
    x_hat = model.decode_batched(model.encode_dataset(x)[0])  # [N, 28, 28]
    return {
        "mse": float(((x_hat - x) ** 2).mean()),
        "mae": float((x_hat - x).abs().mean()),
        "binary_flip_rate": float(((x_hat >= 0.5) != (x >= 0.5)).float().mean()),
    }


def test_vae_save_load_round_trip(tmp_path, images):
    vae = _small_vae()
    vae.history = [{"epoch": 0, "loss": 1.0}]
    save_vae(vae, tmp_path / "ckpt")
    files = sorted(os.listdir(tmp_path / "ckpt"))
    # no temp files left behind
    assert files == sorted([".vae.lock", VAE_CONFIG_FILE, _weights(tmp_path / "ckpt").name])
    loaded = load_vae(tmp_path / "ckpt")
    assert loaded.config() == vae.config() and loaded.history == vae.history
    x = torch.from_numpy(images[:8])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), vae(x), rtol=0, atol=0)


def test_vae_load_rejects_corrupted_and_mismatched(tmp_path):
    d = tmp_path / "ckpt"
    save_vae(_small_vae(), d)
    w = _weights(d)
    weights = w.read_bytes()

    w.write_bytes(weights[: len(weights) // 2])
    with pytest.raises(
        ValueError, match=r"vae\.[0-9a-f]{16}\.safetensors does not match .*checksum"
    ):
        load_vae(d)

    w.write_bytes(weights)
    cfg = json.loads((d / VAE_CONFIG_FILE).read_text())
    cfg["config"]["latent_dim"] = 5
    (d / VAE_CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(
        ValueError, match=r"vae\.[0-9a-f]{16}\.safetensors was saved for architecture"
    ):
        load_vae(d)

    (d / VAE_CONFIG_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=r"corrupted JSON in .*vae\.json"):
        load_vae(d)

    os.remove(d / VAE_CONFIG_FILE)
    with pytest.raises(ValueError, match=r"missing file .*vae\.json"):
        load_vae(d)


def test_vae_load_detects_weights_of_another_architecture(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    save_vae(_small_vae(latent_dim=4), a)
    save_vae(MnistVAE(latent_dim=4, hidden=(32, 32)), b)
    # b's record and weights in a: a consistent pair whose header and record disagree with
    # nothing, but a's architecture record is swapped in
    record = json.loads((b / VAE_CONFIG_FILE).read_text())
    record["config"] = json.loads((a / VAE_CONFIG_FILE).read_text())["config"]
    os.replace(_weights(b), a / record["weights_file"])
    (a / VAE_CONFIG_FILE).write_text(json.dumps(record))
    with pytest.raises(
        ValueError, match=r"vae\.[0-9a-f]{16}\.safetensors was saved for architecture"
    ):
        load_vae(a)


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    d = tmp_path / "ckpt"
    first = _small_vae(seed=0)
    save_vae(first, d)
    before = _weights(d).read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_vae(_small_vae(seed=1), d)
    monkeypatch.undo()
    assert _weights(d).read_bytes() == before
    assert sorted(os.listdir(d)) == sorted([".vae.lock", VAE_CONFIG_FILE, _weights(d).name])
    load_vae(d)


@pytest.fixture(scope="module")
def trained_small_vae(images):
    """One short training run shared by the smoke tests, recording its calls to lcengine ops."""
    calls = {"offsets": [], "kl": 0}
    real_rep, real_kl = lcengine.reparameterize, lcengine.gaussian_kl

    def rep(mu, logvar, *, seed, offset=0):
        calls["offsets"].append(offset)
        return real_rep(mu, logvar, seed=seed, offset=offset)

    def kl(mu, logvar, **kw):
        calls["kl"] += 1
        return real_kl(mu, logvar, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lcengine, "reparameterize", rep)
        mp.setattr(lcengine, "gaussian_kl", kl)
        vae = train_vae(
            images, latent_dim=8, hidden=(128,), epochs=12, batch_size=64, progress=False
        )
    return vae, calls


def test_train_vae_smoke_loss_decreases_and_uses_lcengine_ops(trained_small_vae):
    vae, calls = trained_small_vae
    losses = [h["loss"] for h in vae.history]
    assert len(losses) == 12 and losses[-1] < 0.5 * losses[0]
    steps = 12 * 8  # 512 images in batches of 64
    assert calls["kl"] == steps and len(calls["offsets"]) == steps
    assert len(set(calls["offsets"])) == steps  # fresh noise at every step
    assert not vae.training


def test_reconstruction_error_of_trained_vae_beats_untrained(trained_small_vae, images):
    vae, _ = trained_small_vae
    trained = _reconstruction_error(vae, images[:200])
    untrained = _reconstruction_error(_small_vae(latent_dim=8), images[:200])
    blank = float((images[:200] ** 2).mean())  # error of predicting an empty image
    assert trained["mse"] < 0.6 * blank
    assert trained["mse"] < 0.5 * untrained["mse"]
    assert set(trained) == {"mse", "mae", "binary_flip_rate"}


def test_train_vae_is_deterministic(images):
    kw = dict(latent_dim=4, hidden=(32,), epochs=1, batch_size=64, progress=False, seed=3)
    a, b = train_vae(images[:128], **kw), train_vae(images[:128], **kw)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
    c = train_vae(images[:128], **{**kw, "seed": 4})
    assert not torch.equal(a.decoder[0].weight, c.decoder[0].weight)


def test_train_vae_rejects_bad_images():
    with pytest.raises(ValueError, match=r"\[N, 28, 28\]"):
        train_vae(np.zeros((4, 784), dtype=np.float32), progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_vae(np.full((4, 28, 28), 255.0, dtype=np.float32), progress=False)
    with pytest.raises(ValueError, match="epochs"):
        train_vae(np.zeros((4, 28, 28), dtype=np.float32), epochs=0, progress=False)
