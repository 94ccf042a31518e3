# SPDX-License-Identifier: Apache-2.0
"""Bring-your-own-model wrapper, sigma_bar, the default VAE, its training and checkpoints."""
import json
import os

import numpy as np
import pytest
import torch

import lcengine
from lcengine.method import models
from lcengine.method.data import load_mnist
from lcengine.method.models import (
    VAE_CONFIG_FILE,
    VAE_WEIGHTS_FILE,
    LatentModel,
    MnistVAE,
    compute_sigma_bar,
    load_vae,
    reconstruction_error,
    save_vae,
    sigma_bar_from_logvar,
    train_vae,
)
from second_vae import ConvVAE, make_conv_vae


@pytest.fixture(scope="module")
def images():
    return load_mnist().train_images[:512]


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


def test_from_module_with_second_conv_vae(images):
    """The method takes a VAE of a different architecture through the same interface."""
    vae = make_conv_vae(latent_dim=8)
    assert not hasattr(vae, "data_shape")
    model = LatentModel.from_module(vae)
    assert model.latent_dim == 8
    assert model.data_shape == (28, 28)  # inferred by decoding one latent
    mu, logvar = model.encode_dataset(images[:100], batch_size=32)
    assert mu.shape == logvar.shape == (100, 8)
    assert model.decode(mu[:3]).shape == (3, 28, 28)
    sb = compute_sigma_bar(model, images[:100])
    assert sb.shape == (8,) and torch.all(sb > 0)
    torch.testing.assert_close(sb, torch.exp(0.5 * logvar).mean(0))


def test_decode_is_differentiable():
    model = LatentModel.from_module(_small_vae())
    z = torch.zeros(2, 4, requires_grad=True)
    model.decode(z).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_from_module_requires_interface():
    with pytest.raises(TypeError, match="encode"):
        LatentModel.from_module(torch.nn.Linear(2, 2))
    vae = make_conv_vae()
    del vae.latent_dim
    with pytest.raises(ValueError, match="latent_dim"):
        LatentModel.from_module(vae)
    assert LatentModel.from_module(vae, latent_dim=8).latent_dim == 8
    with pytest.raises(TypeError, match="nn.Module"):
        LatentModel.from_module(object())


def _callables(latent_dim=3, sigma=0.5):
    w = torch.linspace(-1, 1, 28 * 28 * latent_dim).reshape(28 * 28, latent_dim)

    def encode(x):
        mu = x.reshape(x.shape[0], -1) @ w  # [B, D]
        return mu, torch.full_like(mu, sigma)

    def decode(z):
        return torch.sigmoid(z @ w.T).reshape(-1, 28, 28)

    return encode, decode


def test_from_callables_with_scale_encoder(images):
    encode, decode = _callables(sigma=0.5)
    model = LatentModel.from_callables(encode, decode, 3, data_shape=(28, 28),
                                       encoder_returns="scale")
    mu, logvar = model.encode(torch.from_numpy(images[:4]))
    torch.testing.assert_close(logvar, torch.full((4, 3), 2 * np.log(0.5), dtype=torch.float32))
    torch.testing.assert_close(compute_sigma_bar(model, images[:50]), torch.full((3,), 0.5))
    assert model.decode(mu).shape == (4, 28, 28)


def test_from_callables_rejects_non_positive_scale(images):
    encode, decode = _callables(sigma=0.0)
    model = LatentModel.from_callables(encode, decode, 3, data_shape=(28, 28),
                                       encoder_returns="scale")
    with pytest.raises(ValueError, match="non-positive scale"):
        model.encode(images[:2])


def test_sigma_bar_is_training_set_mean_of_scale():
    lv = torch.log(torch.tensor([[0.25, 1.0], [1.0, 4.0]]))  # scales [[.5, 1], [1, 2]]
    torch.testing.assert_close(sigma_bar_from_logvar(lv), torch.tensor([0.75, 1.5]))
    with pytest.raises(ValueError, match="NaN"):
        sigma_bar_from_logvar(torch.tensor([[float("nan"), 0.0]]))


def test_decode_shape_is_validated():
    encode, _ = _callables()
    model = LatentModel.from_callables(encode, lambda z: torch.zeros(z.shape[0], 784), 3,
                                       data_shape=(28, 28))
    with pytest.raises(ValueError,
                       match=r"decode returned \[2, 784\], expected shape \[2, 28, 28\]"):
        model.decode(torch.zeros(2, 3))
    model = LatentModel.from_callables(encode, lambda z: z.numpy(), 3, data_shape=(28, 28))
    with pytest.raises(ValueError, match="decode returned ndarray"):
        model.decode(torch.zeros(2, 3))


def test_encode_output_is_validated(images):
    model = LatentModel.from_callables(lambda x: x.reshape(x.shape[0], -1)[:, :3],
                                       lambda z: z, 3, data_shape=(28, 28))
    with pytest.raises(ValueError, match="encode must return a pair"):
        model.encode(images[:2])
    model = LatentModel.from_callables(lambda x: (torch.zeros(2, 4), torch.zeros(2, 4)),
                                       lambda z: z, 3, data_shape=(28, 28))
    with pytest.raises(ValueError,
                       match=r"encode returned mu of shape \[2, 4\], expected \[2, 3\]"):
        model.encode(images[:2])
    model = LatentModel.from_callables(
        lambda x: (torch.zeros(2, 3), torch.full((2, 3), float("inf"))), lambda z: z, 3,
        data_shape=(28, 28))
    with pytest.raises(ValueError, match="logvar with NaN or infinite"):
        model.encode(images[:2])


def test_bad_latents_and_inputs():
    model = LatentModel.from_module(_small_vae())
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.decode(torch.tensor([[0.0, float("nan"), 0.0, 0.0]]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.decode(np.array([[0.0, np.inf, 0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"z must have shape \[B, 4\]"):
        model.decode(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"x must have shape \[B, 28, 28\]"):
        model.encode(torch.zeros(2, 784))
    with pytest.raises(TypeError, match="torch.Tensor or numpy"):
        model.decode([[0.0] * 4])
    with pytest.raises(ValueError, match="encoder_returns"):
        LatentModel.from_module(_small_vae(), encoder_returns="std")
    with pytest.raises(ValueError, match="latent_dim"):
        LatentModel.from_callables(lambda x: x, lambda z: z, 0, data_shape=(28, 28))


def test_vae_save_load_round_trip(tmp_path, images):
    vae = _small_vae()
    vae.history = [{"epoch": 0, "loss": 1.0}]
    save_vae(vae, tmp_path / "ckpt")
    files = sorted(os.listdir(tmp_path / "ckpt"))
    assert files == sorted([VAE_CONFIG_FILE, VAE_WEIGHTS_FILE])  # no temp files left behind
    loaded = load_vae(tmp_path / "ckpt")
    assert loaded.config() == vae.config() and loaded.history == vae.history
    x = torch.from_numpy(images[:8])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), vae(x), rtol=0, atol=0)


def test_vae_load_rejects_corrupted_and_mismatched(tmp_path):
    d = tmp_path / "ckpt"
    save_vae(_small_vae(), d)
    weights = (d / VAE_WEIGHTS_FILE).read_bytes()

    (d / VAE_WEIGHTS_FILE).write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ValueError, match=r"corrupted safetensors file .*vae\.safetensors"):
        load_vae(d)

    (d / VAE_WEIGHTS_FILE).write_bytes(weights)
    cfg = json.loads((d / VAE_CONFIG_FILE).read_text())
    cfg["config"]["latent_dim"] = 5
    (d / VAE_CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"vae\.safetensors tensor .* has shape"):
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
    os.replace(b / VAE_WEIGHTS_FILE, a / VAE_WEIGHTS_FILE)
    with pytest.raises(ValueError, match=r"vae\.safetensors does not match the configuration"):
        load_vae(a)


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    d = tmp_path / "ckpt"
    first = _small_vae(seed=0)
    save_vae(first, d)
    before = (d / VAE_WEIGHTS_FILE).read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(models.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_vae(_small_vae(seed=1), d)
    monkeypatch.undo()
    assert (d / VAE_WEIGHTS_FILE).read_bytes() == before
    assert sorted(os.listdir(d)) == sorted([VAE_CONFIG_FILE, VAE_WEIGHTS_FILE])
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
        vae = train_vae(images, latent_dim=8, hidden=(128,), epochs=12, batch_size=64,
                        progress=False)
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
    trained = reconstruction_error(vae, images[:200])
    untrained = reconstruction_error(_small_vae(latent_dim=8), images[:200])
    blank = float((images[:200] ** 2).mean())  # error of predicting an empty image
    assert trained["mse"] < 0.6 * blank
    assert trained["mse"] < 0.5 * untrained["mse"]
    assert set(trained) == {"mse", "mae", "binary_flip_rate"}


def test_train_vae_is_deterministic(images):
    kw = dict(latent_dim=4, hidden=(32,), epochs=1, batch_size=64, progress=False, seed=3)
    a, b = train_vae(images[:128], **kw), train_vae(images[:128], **kw)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
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


def test_conv_vae_is_a_different_architecture():
    assert isinstance(make_conv_vae(), ConvVAE)
    assert any(isinstance(m, torch.nn.Conv2d) for m in make_conv_vae().modules())
