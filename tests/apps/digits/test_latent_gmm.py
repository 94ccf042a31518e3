# SPDX-License-Identifier: Apache-2.0
"""The latent_gmm baseline: one Gaussian per seen attribute vector in a VAE's latent space.

A fake "VAE" whose encode/decode are identities on a 2-dimensional latent (the first two pixels)
gives known answers; a tiny untrained MnistVAE checks shapes, determinism and checkpoints."""

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from lcengine.apps.digits import latent_gmm
from lcengine.apps.digits.data import ATTRIBUTE_NAMES
from lcengine.apps.digits.latent_gmm import (
    LATENT_GMM_STEM,
    LatentGMM,
    fit_latent_gmm,
    has_latent_gmm_checkpoint,
    load_latent_gmm,
    save_latent_gmm,
)
from lcengine.apps.digits.vae import MnistVAE

COL = {name: i for i, name in enumerate(ATTRIBUTE_NAMES)}


def _vector(*names):
    v = np.zeros(len(ATTRIBUTE_NAMES), np.int8)
    v[[COL[n] for n in names]] = 1
    return v


class IdentityVAE(nn.Module):
    """encode: the first two pixels (tiny posterior variance); decode: an image holding z in
    its first two pixels."""

    latent_dim = 2

    def encode(self, x):
        mu = x.reshape(x.shape[0], -1)[:, :2]  # [B, 2]
        return mu, torch.full_like(mu, -20.0)

    def decode(self, z):
        out = torch.zeros(z.shape[0], 28 * 28)  # [B, 784]
        out[:, :2] = z
        return out.reshape(-1, 28, 28)


# class -> (attribute vector, rows, mean, covariance); C has fewer than D + 1 = 3 rows
CLASSES = {
    "A": (_vector("digit_0"), 300, [0.25, 0.25], [[4e-4, 2e-4], [2e-4, 3e-4]]),
    "B": (_vector("digit_1", "thick", "slant_right"), 100, [0.75, 0.7], [[2e-4, 0], [0, 5e-4]]),
    "C": (_vector("digit_2"), 2, [0.25, 0.75], [[1e-4, 0], [0, 1e-4]]),
    "E": (_vector("digit_2", "wide", "tall"), 50, [0.75, 0.25], [[3e-4, -1e-4], [-1e-4, 3e-4]]),
}


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(0)
    z, a = [], []
    for vec, n, mean, cov in CLASSES.values():
        z.append(rng.multivariate_normal(mean, cov, size=n))
        a.append(np.repeat(vec[None], n, 0))
    z, a = np.concatenate(z), np.concatenate(a)
    images = np.zeros((z.shape[0], 28, 28), np.float32)
    images[:, 0, :2] = z
    latents = images[:, 0, :2].astype(np.float64)  # what the fake VAE encodes
    gmm = fit_latent_gmm(IdentityVAE(), images, a, eps=1e-6, progress=False)
    return gmm, latents, a


def _index(gmm, name):
    return int(gmm.nearest(CLASSES[name][0][None])[0])


def test_fit_on_known_classes(synthetic):
    gmm, latents, a = synthetic
    assert gmm.num_classes == 4 and gmm.latent_dim == 2
    assert gmm.history[0]["pooled_classes"] == 1 and gmm.history[0]["rows"] == 452
    for name, (vec, n, _, _) in CLASSES.items():
        k = _index(gmm, name)
        assert (gmm.classes[k] == vec).all() and gmm.counts[k] == n
        rows = latents[(a == vec).all(1)]
        np.testing.assert_allclose(gmm.means[k], rows.mean(0), atol=1e-6)
        cov = gmm.cholesky[k] @ gmm.cholesky[k].T
        if name == "C":  # too few rows: the pooled within-class covariance
            assert gmm.pooled[k]
            scatter = sum(
                (r - r.mean(0)).T @ (r - r.mean(0))
                for r in (latents[(a == v).all(1)] for v, *_ in CLASSES.values())
            )
            np.testing.assert_allclose(cov, scatter / (452 - 4) + 1e-6 * np.eye(2), rtol=1e-5)
        else:
            assert not gmm.pooled[k]
            np.testing.assert_allclose(cov, np.cov(rows.T) + 1e-6 * np.eye(2), rtol=1e-5)


def test_samples_come_from_the_class_gaussian(synthetic):
    gmm, _, _ = synthetic
    vec, _, mean, cov = CLASSES["A"]
    x = gmm.generate(np.repeat(vec[None], 4000, 0), seed=3)
    z = x[:, 0, :2].astype(np.float64)  # the fake decoder writes z there
    assert x.dtype == np.float32 and x.shape == (4000, 28, 28) and x[:, 1:].max() == 0
    np.testing.assert_allclose(z.mean(0), mean, atol=2e-3)
    np.testing.assert_allclose(np.cov(z.T), cov, atol=6e-5)
    # all far from the other classes' means, every sample within 6 sigma of A's
    for other in ("B", "C", "E"):
        assert np.linalg.norm(z - CLASSES[other][2], axis=1).min() > 0.2
    white = np.linalg.solve(np.linalg.cholesky(np.array(cov)), (z - mean).T)
    assert (np.sqrt((white**2).sum(0)) < 6).all()


def test_unseen_requests_use_the_documented_class(synthetic):
    gmm, _, _ = synthetic
    names = {_index(gmm, n): n for n in CLASSES}
    # digit_1 alone: A, B and C are all 2 bits away; B shares the digit (although A has more rows)
    # digit_2 + wide: C and E are both 1 bit away with the same digit; E has more rows
    # digit_0 + large_ink: A is 1 bit away
    requests = np.stack(
        [
            _vector("digit_1"),
            _vector("digit_2", "wide"),
            _vector("digit_0", "large_ink"),
            CLASSES["C"][0],
        ]
    )
    assert [names[k] for k in gmm.nearest(requests)] == ["B", "E", "A", "C"]
    x = gmm.generate(requests, seed=0)
    for row, name in enumerate(["B", "E", "A", "C"]):
        assert np.linalg.norm(x[row, 0, :2] - CLASSES[name][2]) < 0.12


@pytest.fixture(scope="module")
def small(mnist):
    torch.manual_seed(0)
    vae = MnistVAE(latent_dim=4, hidden=(32,)).eval()
    gmm = fit_latent_gmm(
        vae, mnist.train_images[:300], mnist.train_attributes[:300], progress=False
    )
    return vae, gmm


def test_shapes_determinism_and_seeds(small, mnist, monkeypatch):
    _, gmm = small
    target = mnist.heldout_attributes[:6]
    x = gmm.generate(target, seed=1)
    assert x.shape == (6, 28, 28) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(x, gmm.generate(target, seed=1))
    assert not np.array_equal(x, gmm.generate(target, seed=2))
    z = gmm.sample_latents(target, seed=1)  # [6, 4]
    monkeypatch.setattr(latent_gmm, "GENERATE_BATCH", 4)  # row r's noise sits at offset r * D
    torch.testing.assert_close(gmm.sample_latents(target, seed=1), z, rtol=0, atol=0)
    np.testing.assert_allclose(gmm.generate(target, seed=1), x, rtol=0, atol=1e-6)  # GEMM sizes
    monkeypatch.undo()
    # bool input
    np.testing.assert_array_equal(x, gmm.generate(target.astype(bool), seed=1))
    assert gmm.generate(target[:0], seed=0).shape == (0, 28, 28)
    cfg = gmm.config()
    assert cfg["method"] == "latent_gmm" and cfg["latent_dim"] == 4 and cfg["use_means"]
    json.dumps(cfg)


def test_save_load_round_trip_and_corruption(small, mnist, tmp_path):
    vae, gmm = small
    d = tmp_path / "gmm"
    assert save_latent_gmm(gmm, d) == d
    assert has_latent_gmm_checkpoint(d) and not has_latent_gmm_checkpoint(tmp_path)
    again = load_latent_gmm(d, vae)
    assert isinstance(again, LatentGMM) and again.config() == gmm.config()
    assert again.history == gmm.history
    target = mnist.heldout_attributes[:8]
    np.testing.assert_array_equal(again.generate(target, seed=5), gmm.generate(target, seed=5))

    torch.manual_seed(1)
    with pytest.raises(ValueError, match="vae is not the VAE"):
        load_latent_gmm(d, MnistVAE(latent_dim=4, hidden=(32,)))
    with pytest.raises(ValueError, match="latent_dim 3"):
        load_latent_gmm(d, MnistVAE(latent_dim=3, hidden=(32,)))

    record = json.loads((d / f"{LATENT_GMM_STEM}.json").read_text())
    weights = d / record["weights_file"]
    blob = bytearray(weights.read_bytes())
    blob[-3] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=re.escape(str(weights))):
        load_latent_gmm(d, vae)
    with pytest.raises(TypeError, match="gmm"):
        save_latent_gmm(vae, tmp_path / "x")


def test_bad_inputs_name_the_argument(small, mnist):
    vae, gmm = small
    x, a = mnist.train_images[:10], mnist.train_attributes[:10]
    cases = [
        ((vae, x[:, :27], a), {}, ValueError, "images"),
        ((vae, x[:1], a[:1]), {}, ValueError, "images must hold at least 2"),
        ((vae, np.where(x > 0.5, np.nan, x), a), {}, ValueError, "images"),
        ((vae, x * 2, a), {}, ValueError, "images"),
        ((vae, x, a[:, :14]), {}, ValueError, "attributes"),
        ((vae, x, a[:9]), {}, ValueError, "attributes must have 10 rows"),
        ((vae, x, a * 2), {}, ValueError, "attributes must hold only 0 and 1"),
        ((vae, x, a), {"eps": 0.0}, ValueError, "eps"),
        ((vae, x, a), {"seed": -1}, ValueError, "seed"),
        ((vae, x, a), {"use_means": 1}, TypeError, "use_means"),
        ((object(), x, a), {}, TypeError, "vae"),
    ]
    for args, kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            fit_latent_gmm(*args, progress=False, **kwargs)
    with pytest.raises(ValueError, match="attributes"):
        gmm.generate(a[:, :14], seed=0)
    with pytest.raises(ValueError, match="attributes"):
        gmm.generate(a.astype(np.float32) * 0.5, seed=0)
    with pytest.raises(TypeError, match="attributes"):
        gmm.generate(a.tolist(), seed=0)
    with pytest.raises(ValueError, match="seed"):
        gmm.generate(a, seed=-3)
