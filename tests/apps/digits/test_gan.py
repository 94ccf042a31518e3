# SPDX-License-Identifier: Apache-2.0
"""The digits' DCGAN-style generator: training, checkpoint, and latent constraints fitted on
prior samples labelled by the pixel classifier (decoder-only path), at tiny size."""

import json
import warnings

import numpy as np
import pytest
import torch

from lcengine.apps.digits.data import ATTRIBUTE_NAMES, ATTRIBUTES
from lcengine.apps.digits.gan import (
    MnistDiscriminator,
    digits_label_fn,
    gan_latent_model,
    has_gan_checkpoint,
    load_gan,
    save_gan,
    train_gan,
)
from lcengine.method import LatentConstraints, SamplingConfig
from lcengine.method.latent_model import EncoderUnavailableError
from support.method_toys import tiny_training

warnings.filterwarnings("ignore", message=".*falling back to the eager.*")
warnings.filterwarnings("ignore", message=".*no fused.*")


@pytest.fixture(scope="module")
def generator(mnist):
    return train_gan(
        mnist.train_images[:256],
        latent_dim=4,
        channels=4,
        epochs=1,
        batch_size=64,
        seed=1,
        progress=False,
    )


def test_shapes_and_training(generator):
    assert generator.history and set(generator.history[0]) == {
        "epoch",
        "loss_d",
        "loss_g",
        "seconds",
    }
    assert np.isfinite(generator.history[0]["loss_d"]) and not generator.training
    with torch.no_grad():
        x = generator(torch.randn(3, 4))
    assert x.shape == (3, 28, 28) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert MnistDiscriminator(channels=4)(x).shape == (3,)
    model = gan_latent_model(generator)
    assert not model.has_encoder and model.latent_dim == 4 and model.data_shape == (28, 28)
    with pytest.raises(ValueError, match="images must have shape"):
        train_gan(np.zeros((4, 28, 27), np.float32), progress=False)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        train_gan(np.full((4, 28, 28), 2.0, np.float32), progress=False)


def test_save_load_roundtrip(generator, tmp_path):
    d = save_gan(generator, tmp_path / "gan")
    assert has_gan_checkpoint(d) and not has_gan_checkpoint(tmp_path)
    again = load_gan(d)
    z = torch.randn(5, 4)
    with torch.no_grad():
        assert torch.equal(generator(z), again(z))
    assert again.history == generator.history and not again.training
    record = json.loads((d / "gan.json").read_text())
    record["config"]["channels"] = 5  # another architecture than the weights
    (d / "gan.json").write_text(json.dumps(record))
    (d / "gan.previous.json").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="does not match the configuration"):
        load_gan(d)
    with pytest.raises(TypeError, match="MnistGenerator"):
        save_gan(torch.nn.Linear(2, 2), tmp_path / "x")


def test_constraints_on_labelled_prior_samples(generator, classifier, mnist):
    label_fn = digits_label_fn(classifier, mnist.shape_thresholds)
    x = generator(torch.randn(6, 4)).detach().numpy()
    labels = label_fn(x)
    assert labels.shape == (6, len(ATTRIBUTE_NAMES)) and (labels[:, :10].sum(1) == 1).all()
    lc = LatentConstraints(
        gan_latent_model(generator),
        ATTRIBUTES,
        training=tiny_training(attribute_steps=20, realism_steps=20),
        sampling=SamplingConfig(steps=5, lr=0.1),
    )
    lc.fit_decoder_only(256, label_fn, progress=False)
    assert lc.is_fitted and torch.equal(lc.sigma_bar.cpu(), torch.ones(4))
    digit = int(np.argmax(lc.summary.count_pos[:10]))  # a digit the samples hold
    for method in ("actor", "optimize"):
        out = lc.sample(str(digit), n=4, method=method)
        assert out.images.shape == (4, 28, 28) and (out.attributes[:, digit] == 1).all()
    with pytest.raises(EncoderUnavailableError, match="transform"):
        lc.transform(mnist.heldout_images[:2], "thick")
