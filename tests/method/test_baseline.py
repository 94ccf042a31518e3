# SPDX-License-Identifier: Apache-2.0
"""Attribute-vector baseline on synthetic latents where the right shift is known."""

import numpy as np
import pytest
import torch

from lcengine.method.baseline import AttributeVectorBaseline

NAMES = ("digit_0", "digit_1", "digit_2", "thick")
GROUPS = {"digit": NAMES[:3]}  # the one-hot group: a request moves between its centroids
CENTERS = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])  # digit centroids


@pytest.fixture(scope="module")
def synthetic():
    """Three digit clusters (exact centroids) and 'thick' = z[:, 2] > 0 (balanced)."""
    rng = np.random.default_rng(0)
    n_per = 400
    noise = rng.normal(size=(n_per, 3))
    noise -= noise.mean(0)  # cluster means are then exactly CENTERS
    z = np.concatenate([c + noise for c in CENTERS])  # [1200, 3]
    digits = np.repeat(np.arange(3), n_per)
    att = np.zeros((z.shape[0], 4), dtype=np.int8)
    att[np.arange(z.shape[0]), digits] = 1
    att[:, 3] = z[:, 2] > 0
    return z, att, AttributeVectorBaseline(NAMES, one_hot_groups=GROUPS).fit(z, att)


def test_fit_centroids_and_vectors(synthetic):
    z, att, b = synthetic
    np.testing.assert_allclose(b.pos_centroids[:3], CENTERS, atol=1e-12)
    np.testing.assert_allclose(b.global_centroid, CENTERS.mean(0), atol=1e-12)
    np.testing.assert_allclose(b.frequencies, [1 / 3, 1 / 3, 1 / 3, att[:, 3].mean()])
    thick_vec = z[att[:, 3] == 1].mean(0) - z[att[:, 3] == 0].mean(0)
    np.testing.assert_allclose(b.vectors[3], thick_vec)
    assert thick_vec[2] > 1.4 and abs(thick_vec[0]) < 0.2  # ~2 E|N(0,1)| = 1.6 along z2


def test_digit_transform_moves_between_class_centroids(synthetic):
    _, _, b = synthetic
    values = np.array([0, 0, 1, 0])
    mask = np.array([True, True, True, False])
    z = CENTERS[[1, 0]]  # sources: a 1 and a 0
    src = np.array([[0, 1, 0, 0], [1, 0, 0, 0]])
    out = b.apply(z, values, mask, source_attributes=src)
    np.testing.assert_allclose(out, CENTERS[[2, 2]], atol=1e-6)  # both land on the 2 centroid


def test_digit_request_from_unknown_source_moves_from_global_centroid(synthetic):
    _, _, b = synthetic
    z = np.zeros((2, 3), dtype=np.float32)
    out = b.apply(z, np.array([0, 1, 0, 0]), np.array([1, 1, 1, 0], dtype=bool))
    np.testing.assert_allclose(out, np.tile(CENTERS[1] - CENTERS.mean(0), (2, 1)), atol=1e-6)
    assert out.dtype == np.float32


def test_shape_attribute_shift_respects_source(synthetic):
    _, _, b = synthetic
    v = b.vectors[3]
    z = np.zeros((3, 3))
    values, mask = np.array([0, 0, 0, 1]), np.array([0, 0, 0, 1], dtype=bool)
    src = np.array([[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    out = b.apply(z, values, mask, source_attributes=src)
    np.testing.assert_allclose(out[0], v, atol=1e-6)  # thin -> thick: the full vector
    np.testing.assert_allclose(out[1], 0.0, atol=1e-6)  # already thick: untouched
    # Asking for 'not thick' from a thick source moves by minus the vector.
    out = b.apply(z[:1], np.array([0, 0, 0, 0]), mask, source_attributes=src[1])
    np.testing.assert_allclose(out[0], -v, atol=1e-6)


def test_prior_shift_moves_the_data_mean_onto_the_class_centroid(synthetic):
    z, att, b = synthetic
    mask = np.array([0, 0, 0, 1], dtype=bool)
    mean_thick = b.apply(z.mean(0, keepdims=True), np.array([0, 0, 0, 1]), mask)[0]
    np.testing.assert_allclose(mean_thick, z[att[:, 3] == 1].mean(0), atol=1e-5)
    mean_thin = b.apply(z.mean(0, keepdims=True), np.array([0, 0, 0, 0]), mask)[0]
    np.testing.assert_allclose(mean_thin, z[att[:, 3] == 0].mean(0), atol=1e-5)


def test_combined_request_adds_shifts_and_scale(synthetic):
    _, _, b = synthetic
    z = np.zeros((1, 3))
    values, mask = np.array([0, 0, 1, 1]), np.ones(4, dtype=bool)
    expected = (CENTERS[2] - b.global_centroid) + (1 - b.frequencies[3]) * b.vectors[3]
    np.testing.assert_allclose(b.apply(z, values, mask)[0], expected, atol=1e-6)
    half = AttributeVectorBaseline(NAMES, scale=0.5, one_hot_groups=GROUPS).fit(*synthetic[:2])
    np.testing.assert_allclose(half.apply(z, values, mask)[0], 0.5 * expected, atol=1e-6)


def test_per_row_requests_and_torch_io(synthetic):
    _, _, b = synthetic
    z = torch.zeros(2, 3, dtype=torch.float64)
    values = np.array([[0, 1, 0, 0], [0, 0, 1, 0]])
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 0]], dtype=bool)
    out = b.apply(z, values, mask)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    g = b.global_centroid
    np.testing.assert_allclose(out.numpy(), [CENTERS[1] - g, CENTERS[2] - g], atol=1e-9)


def test_errors(synthetic):
    z, att, b = synthetic
    with pytest.raises(RuntimeError, match="fit"):
        AttributeVectorBaseline(NAMES, one_hot_groups=GROUPS).apply(
            z[:1], np.zeros(4), np.ones(4, bool)
        )
    with pytest.raises(ValueError, match=r"attributes must have shape \[1200, 4\]"):
        AttributeVectorBaseline(NAMES, one_hot_groups=GROUPS).fit(z, att[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        AttributeVectorBaseline(NAMES, one_hot_groups=GROUPS).fit(np.full((2, 3), np.nan), att[:2])
    with pytest.raises(ValueError, match=r"values must have shape \[4\] or \[1, 4\]"):
        b.apply(z[:1], np.zeros(5), np.ones(4, bool))
    with pytest.raises(ValueError, match="latent dimension 2"):
        b.apply(z[:1, :2], np.zeros(4), np.ones(4, bool))
    with pytest.raises(ValueError, match="z_start contains NaN"):
        b.apply(np.full((1, 3), np.nan), np.zeros(4), np.ones(4, bool))
    with pytest.raises(ValueError, match="more than one digit"):
        b.apply(z[:1], np.array([1, 1, 0, 0]), np.ones(4, bool))
    const = att.copy()
    const[:, 3] = 1
    bc = AttributeVectorBaseline(NAMES, one_hot_groups=GROUPS).fit(z, const)
    with pytest.raises(ValueError, match="'thick' is constant"):
        bc.apply(z[:1], np.array([0, 0, 0, 0]), np.array([0, 0, 0, 1], bool))


def test_without_groups_every_attribute_is_a_vector(synthetic):
    z, att, _ = synthetic
    b = AttributeVectorBaseline(NAMES).fit(z, att)
    assert b.group_columns == {}
    out = b.apply(np.zeros((1, 3)), np.array([0, 1, 0, 0]), np.array([0, 1, 0, 0], bool))[0]
    np.testing.assert_allclose(out, (1 - b.frequencies[1]) * b.vectors[1], atol=1e-6)
