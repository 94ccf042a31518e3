# SPDX-License-Identifier: Apache-2.0
"""The digits with a model of another architecture: the method does not care which VAE."""

import warnings

from lcengine.apps.digits.data import ATTRIBUTE_NAMES, VOCABULARY
from lcengine.method import LatentConstraints, LatentModel, SamplingConfig
from support.method_toys import tiny_training
from support.second_vae import make_conv_vae

warnings.filterwarnings("ignore", message=".*falling back to the eager.*")
warnings.filterwarnings("ignore", message=".*no fused.*")


def test_second_vae_architecture_works(mnist):
    """A conv VAE written like a user's own (tests/support/second_vae.py) plugs in unchanged."""
    ds = mnist
    model = LatentModel.from_module(make_conv_vae(latent_dim=6))
    lc = LatentConstraints(
        model,
        ATTRIBUTE_NAMES,
        vocabulary=VOCABULARY,
        training=tiny_training(attribute_steps=10, realism_steps=10),
        sampling=SamplingConfig(steps=5),
        transform=SamplingConfig(steps=5),
    )
    lc.fit(ds.train_images[:300], ds.train_attributes[:300], progress=False)
    assert lc.sigma_bar.shape == (6,)
    for method in ("actor", "optimize", "baseline"):
        res = lc.sample("7 thick", 3, method=method)
        assert res.images.shape == (3, 28, 28)
    tr = lc.transform(ds.heldout_images[:2], "slant_right")
    assert tr.images.shape == (2, 28, 28) and tr.steps.max() <= 5
