# SPDX-License-Identifier: Apache-2.0
"""Decoder-only models (a GAN generator): LatentModel.from_decoder, fit_decoder_only on
labelled prior samples, sampling with the actor and the optimizer, transforms refused."""

import warnings

import numpy as np
import pytest
import torch

from lcengine.method import LatentConstraints, SamplingConfig
from lcengine.method.data import LatentSamples, label_latents
from lcengine.method.latent_model import EncoderUnavailableError, LatentModel, compute_sigma_bar
from support.method_toys import (
    LATENT_DIM,
    NAMES,
    tiny_training,
    toy_decode,
    toy_decoder_only_model,
    toy_label_fn,
)

warnings.filterwarnings("ignore", message=".*falling back to the eager.*")
warnings.filterwarnings("ignore", message=".*no fused.*")


def _lc(**training) -> LatentConstraints:
    steps = dict(attribute_steps=300, realism_steps=300, actor_every=2)
    steps.update(training)
    return LatentConstraints(
        toy_decoder_only_model(),
        NAMES,
        training=tiny_training(**steps),
        sampling=SamplingConfig(steps=60, lr=0.1, w_dist=0.001),
    )


@pytest.fixture(scope="module")
def fitted():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    lc = _lc().fit_decoder_only(512, toy_label_fn, seed=3, progress=False)
    torch.set_num_threads(n)
    return lc


def test_from_decoder_has_no_encoder():
    model = toy_decoder_only_model()
    assert not model.has_encoder and model.latent_dim == LATENT_DIM
    assert model.latent_shape == (LATENT_DIM,) and "decoder-only" in repr(model)
    x = model.decode(torch.zeros(2, LATENT_DIM))
    assert x.shape == (2, 5)
    for call in (
        lambda: model.encode(x),
        lambda: model.encode_dataset(x),
        lambda: compute_sigma_bar(model, x),
    ):
        with pytest.raises(EncoderUnavailableError, match="decoder-only"):
            call()
    # data_shape inferred from one decoded zero latent; a module's forward is the decoder
    assert LatentModel.from_decoder(toy_decode, LATENT_DIM).data_shape == (5,)
    gen = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Unflatten(1, (2, 3)))
    wrapped = LatentModel.from_decoder(gen, 3)
    assert wrapped.data_shape == (2, 3) and not gen.training and wrapped.module is gen
    with pytest.raises(TypeError, match="decode must be"):
        LatentModel.from_decoder("generator", 3)
    with pytest.raises(ValueError, match="latent_dim"):
        LatentModel.from_decoder(toy_decode, data_shape=(5,))


def test_latent_samples_and_label_latents():
    z = torch.randn(10, LATENT_DIM)
    model = toy_decoder_only_model()
    labels = label_latents(model, z, toy_label_fn, num_attributes=3, batch_size=4, progress=False)
    assert labels.shape == (10, 3) and labels.dtype == np.int8
    assert np.array_equal(labels, (z[:, :3] > 0).numpy().astype(np.int8))
    src = LatentSamples(z, labels)
    assert not src.has_logvar and torch.equal(src.sigma_bar, torch.ones(LATENT_DIM))
    mu, lv, att = src.read(torch.tensor([1, 1]))
    assert lv is None and torch.equal(mu[0], z[1]) and att.shape == (2, 3)
    with pytest.raises(ValueError, match=r"shape \[10, 3\]"):
        label_latents(model, z, lambda x: x[:, :2] > 0, num_attributes=3, progress=False)
    with pytest.raises(ValueError, match="only 0 and 1"):
        label_latents(model, z, lambda x: x[:, :3], num_attributes=3, progress=False)
    with pytest.raises(TypeError, match="label_fn must be callable"):
        label_latents(model, z, "a0", num_attributes=3, progress=False)
    with pytest.raises(ValueError, match="sigma_bar"):
        LatentSamples(z, labels, sigma_bar=np.zeros(LATENT_DIM))
    with pytest.raises(ValueError, match=r"attributes must have shape \[10, A\]"):
        LatentSamples(z, labels[:5])


def test_fit_on_labelled_prior_samples(fitted):
    lc = fitted
    assert lc.is_fitted and isinstance(lc.data, LatentSamples)
    assert lc.data.num_rows == 512
    assert torch.equal(lc.data.z, lc.prior_training_latents(512, seed=3))
    assert torch.equal(lc.sigma_bar.cpu(), torch.ones(LATENT_DIM))
    # prior samples are the real rows here, never fakes
    assert lc.training.prior_fake_prob == 0.0 and lc.trainer.config.prior_fake_prob == 0.0
    # the label function's verdicts are the training attributes
    assert np.array_equal(lc.data.attributes.numpy(), toy_label_fn(lc.data.z.numpy()))


@pytest.mark.parametrize("method", ["actor", "optimize"])
def test_sample_both_methods(fitted, method):
    out = fitted.sample("a0 !a1", n=64, method=method, seed=1)
    assert out.images.shape == (64, 5) and out.latents.shape == (64, LATENT_DIM)
    measured = toy_label_fn(out.images)
    # the exact labels of the decoded samples follow the request for most rows
    assert measured[:, 0].mean() > 0.7 and measured[:, 1].mean() < 0.3


def test_transform_is_refused(fitted):
    with pytest.raises(EncoderUnavailableError, match="transform needs an encoder"):
        fitted.transform(np.zeros((2, 5), np.float32), "a1")


def test_fit_with_data_is_refused_and_user_attributes():
    lc = _lc(attribute_steps=5, realism_steps=5)
    with pytest.raises(EncoderUnavailableError, match="encode"):
        lc.fit(np.zeros((4, 5), np.float32), np.zeros((4, 3), np.int8), progress=False)
    z = lc.prior_training_latents(64, seed=0)
    lc.fit_decoder_only(z=z, attributes=toy_label_fn(z.numpy()), progress=False)
    assert lc.is_fitted and torch.equal(lc.data.z, z)
    for kw, match in (
        (dict(), "num_samples and z"),
        (dict(num_samples=8, z=z), "num_samples and z"),
        (dict(num_samples=8), "label_fn and attributes"),
        (dict(num_samples=8, label_fn=toy_label_fn, attributes=np.zeros((8, 3))), "label_fn"),
    ):
        with pytest.raises(ValueError, match=match):
            _lc().fit_decoder_only(progress=False, **kw)
    with pytest.raises(ValueError, match=r"label_fn returned shape \[16, 4\]"):
        _lc().fit_decoder_only(16, lambda x: np.zeros((x.shape[0], 4), np.int8), progress=False)


def test_save_load_and_continue(fitted, tmp_path):
    fitted.save(tmp_path / "ck")
    lc = LatentConstraints.load(tmp_path / "ck", toy_decoder_only_model())
    assert lc.is_fitted and torch.equal(lc.sigma_bar, torch.ones(LATENT_DIM))
    a = fitted.sample("a0", n=8, method="actor", seed=2).latents
    b = lc.sample("a0", n=8, method="actor", seed=2).latents
    assert torch.allclose(a, b)
    # continuing needs the rows again: the same num_samples, seed and label_fn give them
    lc.fit_decoder_only(512, toy_label_fn, seed=3, realism_steps=310, progress=False)
    assert lc.trainer.realism_step == 310
