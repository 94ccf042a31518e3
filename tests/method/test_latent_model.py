# SPDX-License-Identifier: Apache-2.0
"""Bring-your-own-model wrapper and sigma_bar, on models written the way users write theirs."""

import numpy as np
import pytest
import torch

from lcengine.method.latent_model import LatentModel, compute_sigma_bar, sigma_bar_from_logvar
from support.second_vae import ConvVAE, make_conv_vae


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
    model = LatentModel.from_module(make_conv_vae(latent_dim=4))
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
    model = LatentModel.from_callables(
        encode, decode, 3, data_shape=(28, 28), encoder_returns="scale"
    )
    mu, logvar = model.encode(torch.from_numpy(images[:4]))
    torch.testing.assert_close(logvar, torch.full((4, 3), 2 * np.log(0.5), dtype=torch.float32))
    torch.testing.assert_close(compute_sigma_bar(model, images[:50]), torch.full((3,), 0.5))
    assert model.decode(mu).shape == (4, 28, 28)


def test_from_callables_rejects_non_positive_scale(images):
    encode, decode = _callables(sigma=0.0)
    model = LatentModel.from_callables(
        encode, decode, 3, data_shape=(28, 28), encoder_returns="scale"
    )
    with pytest.raises(ValueError, match="non-positive scale"):
        model.encode(images[:2])


def test_sigma_bar_is_training_set_mean_of_scale():
    lv = torch.log(torch.tensor([[0.25, 1.0], [1.0, 4.0]]))  # scales [[.5, 1], [1, 2]]
    torch.testing.assert_close(sigma_bar_from_logvar(lv), torch.tensor([0.75, 1.5]))
    with pytest.raises(ValueError, match="NaN"):
        sigma_bar_from_logvar(torch.tensor([[float("nan"), 0.0]]))


def test_decode_shape_is_validated():
    encode, _ = _callables()
    model = LatentModel.from_callables(
        encode, lambda z: torch.zeros(z.shape[0], 784), 3, data_shape=(28, 28)
    )
    with pytest.raises(
        ValueError, match=r"decode returned \[2, 784\], expected shape \[2, 28, 28\]"
    ):
        model.decode(torch.zeros(2, 3))
    model = LatentModel.from_callables(encode, lambda z: z.numpy(), 3, data_shape=(28, 28))
    with pytest.raises(ValueError, match="decode returned ndarray"):
        model.decode(torch.zeros(2, 3))


def test_encode_output_is_validated(images):
    model = LatentModel.from_callables(
        lambda x: x.reshape(x.shape[0], -1)[:, :3], lambda z: z, 3, data_shape=(28, 28)
    )
    with pytest.raises(ValueError, match="encode must return a pair"):
        model.encode(images[:2])
    model = LatentModel.from_callables(
        lambda x: (torch.zeros(2, 4), torch.zeros(2, 4)), lambda z: z, 3, data_shape=(28, 28)
    )
    with pytest.raises(
        ValueError, match=r"encode returned mu of shape \[2, 4\], expected \[2, 3\]"
    ):
        model.encode(images[:2])
    model = LatentModel.from_callables(
        lambda x: (torch.zeros(2, 3), torch.full((2, 3), float("inf"))),
        lambda z: z,
        3,
        data_shape=(28, 28),
    )
    with pytest.raises(ValueError, match="logvar with NaN or infinite"):
        model.encode(images[:2])


def test_bad_latents_and_inputs():
    model = LatentModel.from_module(make_conv_vae(latent_dim=4))
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
        LatentModel.from_module(make_conv_vae(latent_dim=4), encoder_returns="std")
    with pytest.raises(ValueError, match="latent_dim"):
        LatentModel.from_callables(lambda x: x, lambda z: z, 0, data_shape=(28, 28))


def test_conv_vae_is_a_different_architecture():
    assert isinstance(make_conv_vae(), ConvVAE)
    assert any(isinstance(m, torch.nn.Conv2d) for m in make_conv_vae().modules())
