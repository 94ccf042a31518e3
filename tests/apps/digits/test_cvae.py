# SPDX-License-Identifier: Apache-2.0
"""The digits' conditional VAE baseline: generation for requested attribute rows, checkpoint,
argument checks, and a learning check that fails when the conditioning is broken."""

import json

import numpy as np
import pytest
import torch

from lcengine.apps.digits import cvae as cvae_module
from lcengine.apps.digits.cvae import (
    FAST,
    FULL,
    ConditionalVAE,
    has_cvae_checkpoint,
    load_cvae,
    save_cvae,
    train_cvae,
)

# Small but trained enough to read the requested digit: ~2 s on one thread (1,000 images, 15
# epochs); the pixel classifier reads the requested digit on ~77% of its samples.
_LEARN = {"latent_dim": 4, "hidden": (256,), "epochs": 15, "batch_size": 64, "lr": 2e-3}


@pytest.fixture(scope="module")
def model(mnist):
    return train_cvae(
        mnist.train_images[:1000], mnist.train_attributes[:1000], seed=0, progress=False, **_LEARN
    )


def _record(d):
    return json.loads((d / "cvae.json").read_text())


def test_generate_shapes_range_and_determinism(model, mnist):
    assert set(model.history[0]) == {"epoch", "loss", "recon", "kl", "seconds"}
    assert len(model.history) == _LEARN["epochs"] and not model.training
    assert model.config() == {"latent_dim": 4, "hidden": [256]}
    att = mnist.heldout_attributes[:7]  # int8 [7, 15]
    x = model.generate(att, seed=3)
    assert x.shape == (7, 28, 28) and x.dtype == np.float32
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert np.array_equal(x, model.generate(att, seed=3))  # deterministic for a seed
    assert np.abs(x - model.generate(att, seed=4)).mean() > 1e-3  # another seed, other images
    # bool, float and tensor rows are the same request
    assert np.array_equal(x, model.generate(att.astype(bool), seed=3))
    assert np.array_equal(x, model.generate(torch.from_numpy(att.astype(np.float32)), seed=3))
    # batches of at most 1024 rows: row i's noise does not depend on the batching
    many = np.repeat(att, 150, axis=0)[:1030]  # [1030, 15]
    big = model.generate(many, seed=3)
    assert big.shape == (1030, 28, 28)
    np.testing.assert_allclose(big[:7], model.generate(many[:7], seed=3), atol=1e-5)
    assert not model.training


def test_fast_settings_train(mnist):
    m = train_cvae(mnist.train_images[:128], mnist.train_attributes[:128], progress=False, **FAST)
    assert isinstance(m, ConditionalVAE) and len(m.history) == FAST["epochs"]
    assert np.isfinite(m.history[-1]["loss"]) and set(FULL) == set(FAST)


def test_save_load_round_trip_and_corruption(model, mnist, tmp_path):
    d = save_cvae(model, tmp_path / "cvae")
    assert has_cvae_checkpoint(d) and not has_cvae_checkpoint(tmp_path)
    again = load_cvae(d)
    att = mnist.heldout_attributes[:9]
    assert np.array_equal(model.generate(att, seed=1), again.generate(att, seed=1))
    assert again.history == model.history and not again.training
    assert again.config() == model.config()

    w = d / _record(d)["weights_file"]
    blob = bytearray(w.read_bytes())
    blob[-5] ^= 0x01  # one bit of one weight: still a well-formed safetensors file
    w.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="checksum mismatch") as e:
        load_cvae(d)
    assert str(w) in str(e.value)
    with pytest.raises(TypeError, match="ConditionalVAE"):
        save_cvae(torch.nn.Linear(2, 2), tmp_path / "x")


def test_record_checked_before_allocation(model, tmp_path, monkeypatch):
    d = save_cvae(model, tmp_path / "cvae")
    record = _record(d)
    record["config"]["hidden"] = [257]  # another architecture than the weights
    (d / "cvae.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="does not match the configuration"):
        load_cvae(d)
    record["config"]["latent_dim"] = 10**9
    (d / "cvae.json").write_text(json.dumps(record))

    def boom(*args, **kwargs):
        raise AssertionError("a network was allocated from a tampered record")

    monkeypatch.setattr(cvae_module, "ConditionalVAE", boom)
    with pytest.raises(ValueError, match="config.latent_dim") as e:
        load_cvae(d)
    assert str(d / "cvae.json") in str(e.value)


def _train(images, attributes, **kw):
    return train_cvae(images, attributes, **{**FAST, "progress": False, **kw})


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"attributes": np.zeros((8, 14), np.int8)}, ValueError, "attributes must have shape"),
        ({"attributes": np.full((8, 15), 2, np.int8)}, ValueError, "attributes must hold only"),
        ({"attributes": np.zeros((7, 15), np.int8)}, ValueError, "attributes has 7 rows"),
        ({"attributes": np.full((8, 15), "a")}, TypeError, "attributes must hold"),
        ({"images": np.full((8, 28, 28), 1.5, np.float32)}, ValueError, r"images .*\[0, 1\]"),
        ({"images": np.zeros((8, 28, 27), np.float32)}, ValueError, "images must have shape"),
        ({"images": np.full((8, 28, 28), np.nan, np.float32)}, ValueError, "images contains"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"epochs": -1}, ValueError, "epochs"),
        ({"epochs": 1.5}, TypeError, "epochs"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"lr": 0.0}, ValueError, "lr"),
        ({"seed": -1}, ValueError, "seed"),
        ({"latent_dim": 0}, ValueError, "latent_dim"),
        ({"hidden": (64, 0)}, ValueError, r"hidden\[1\]"),
    ],
)
def test_training_arguments_are_checked(mnist, change, error, match):
    args = {"images": mnist.train_images[:8], "attributes": mnist.train_attributes[:8], **change}
    with pytest.raises(error, match=match):
        _train(**args)


def test_too_few_images_are_refused(mnist):
    with pytest.raises(ValueError, match="images must have shape"):
        _train(mnist.train_images[:1], mnist.train_attributes[:1])


@pytest.mark.parametrize(
    ("attributes", "match"),
    [
        (np.zeros((3, 14), np.int8), "attributes must have shape"),
        (np.zeros((3, 15, 1), np.int8), "attributes must have shape"),
        (np.zeros((0, 15), np.int8), "attributes must have shape"),
        (np.full((3, 15), 0.5, np.float32), "attributes must hold only 0/1"),
        (np.full((3, 15), np.nan, np.float32), "attributes must hold only 0/1"),
        (-np.ones((3, 15), np.int64), "attributes must hold only 0/1"),
    ],
)
def test_generate_refuses_bad_attributes(model, attributes, match):
    with pytest.raises(ValueError, match=match):
        model.generate(attributes, seed=0)


def test_generate_refuses_bad_seed(model, mnist):
    with pytest.raises(ValueError, match="seed"):
        model.generate(mnist.heldout_attributes[:2], seed=-1)
    with pytest.raises(TypeError, match="seed"):
        model.generate(mnist.heldout_attributes[:2], seed=1.0)


def test_conditioning_is_learned(model, classifier, mnist):
    """The session classifier reads the requested digit on most samples (~77%; seeds 0 and 1
    of the noise both). Chance is ~10%, and a model that ignores its attribute input scores at
    most the largest digit frequency of the requests (checked: ~10% with the label input zeroed
    in the encoder and the decoder)."""
    att = mnist.heldout_attributes[:300]
    x = model.generate(att, seed=0)
    accuracy = float((classifier.predict(x) == att[:, :10].argmax(1)).mean())
    assert accuracy > 0.5, accuracy
