# SPDX-License-Identifier: Apache-2.0
"""Spatial latents [C, H, W]: the method sees flat rows D = C*H*W, the user's convolutional
encoder and decoder see [B, C, H, W]; fit, sample, transform and checkpoints."""

import warnings

import numpy as np
import pytest
import torch

from lcengine.method import LatentConstraints, SamplingConfig
from lcengine.method.latent_model import LatentModel
from support.method_toys import (
    SPATIAL_DATA_SHAPE,
    SPATIAL_LATENT_SHAPE,
    ConvToyVAE,
    spatial_data,
    tiny_training,
)

warnings.filterwarnings("ignore", message=".*falling back to the eager.*")
warnings.filterwarnings("ignore", message=".*no fused.*")

D = int(np.prod(SPATIAL_LATENT_SHAPE))


@pytest.fixture(scope="module")
def fitted():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    x, att = spatial_data(256)
    lc = LatentConstraints(
        LatentModel.from_module(ConvToyVAE()),
        ("top", "left"),
        training=tiny_training(attribute_steps=60, realism_steps=40),
        sampling=SamplingConfig(steps=10, lr=0.1),
        transform=SamplingConfig(steps=10, lr=0.1),
    )
    lc.fit(x, att, progress=False)
    torch.set_num_threads(n)
    return lc, x


def test_shapes_at_the_boundary():
    vae = ConvToyVAE()
    model = LatentModel.from_module(vae)  # latent_shape and data_shape from the module
    assert model.latent_shape == SPATIAL_LATENT_SHAPE and model.latent_dim == D
    assert model.data_shape == SPATIAL_DATA_SHAPE and "latent_shape" in repr(model)
    x = torch.from_numpy(spatial_data(3)[0])
    mu, logvar = model.encode(x)  # flat rows
    assert mu.shape == (3, D) and logvar.shape == (3, D)
    mu_user, _ = vae.encode(x)  # [3, 4, 2, 2]
    assert torch.equal(mu, mu_user.reshape(3, -1)) and torch.equal(model.unflatten(mu), mu_user)
    assert torch.equal(model.flatten(mu_user), mu)
    assert torch.equal(model.decode(mu), vae.decode(mu_user))  # the decoder got [B, C, H, W]
    with pytest.raises(ValueError, match=rf"z must have shape \[B, {D}\]"):
        model.decode(mu_user)
    with pytest.raises(ValueError, match="latent_dim 15 differs from prod"):
        LatentModel.from_module(vae, 15)
    with pytest.raises(ValueError, match="latent_shape must be"):
        LatentModel.from_module(vae, latent_shape=(4, 0, 2))
    # the callables form and the decoder-only form take latent_shape too
    m2 = LatentModel.from_callables(
        vae.encode, vae.decode, None, data_shape=SPATIAL_DATA_SHAPE, latent_shape=(4, 2, 2)
    )
    assert m2.latent_dim == D and torch.equal(m2.encode(x)[0], mu)
    m3 = LatentModel.from_decoder(vae.dec, latent_shape=(4, 2, 2))
    assert m3.data_shape == SPATIAL_DATA_SHAPE and m3.latent_dim == D
    # a wrong user shape names encode
    bad = LatentModel.from_callables(
        lambda v: (torch.zeros(len(v), D), torch.zeros(len(v), D)),
        vae.decode,
        None,
        data_shape=SPATIAL_DATA_SHAPE,
        latent_shape=SPATIAL_LATENT_SHAPE,
    )
    with pytest.raises(ValueError, match=r"encode returned mu of shape \[3, 16\], expected"):
        bad.encode(x)


def test_fit_sample_transform(fitted):
    lc, x = fitted
    assert lc.is_fitted and lc.latent_dim == D and lc.sigma_bar.shape == (D,)
    for method in ("actor", "optimize"):
        out = lc.sample("top !left", n=6, method=method, seed=0)
        assert out.latents.shape == (6, D) and out.images.shape == (6,) + SPATIAL_DATA_SHAPE
        assert lc.model.unflatten(out.latents).shape == (6,) + SPATIAL_LATENT_SHAPE
    tr = lc.transform(x[:5], "left")
    assert tr.latents.shape == (5, D) and tr.images.shape == (5,) + SPATIAL_DATA_SHAPE
    assert (tr.attributes[:, 1] == 1).all()


def test_checkpoint_keeps_latent_shape(fitted, tmp_path):
    lc, _ = fitted
    lc.save(tmp_path / "ck")
    again = LatentConstraints.load(tmp_path / "ck", LatentModel.from_module(ConvToyVAE()))
    a = lc.sample("top", n=4, method="actor", seed=1).latents
    assert torch.allclose(a, again.sample("top", n=4, method="actor", seed=1).latents)
    vae = ConvToyVAE()
    other = LatentModel.from_callables(
        lambda v: tuple(t.reshape(len(v), 2, 8) for t in vae.encode(v)),
        lambda z: vae.decode(z.reshape(len(z), 4, 2, 2)),
        None,
        data_shape=SPATIAL_DATA_SHAPE,
        latent_shape=(2, 8),  # the same D, another shape
    )
    with pytest.raises(ValueError, match=r"latent shape \[4, 2, 2\], the model has \[2, 8\]"):
        LatentConstraints.load(tmp_path / "ck", other)
