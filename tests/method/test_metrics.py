# SPDX-License-Identifier: Apache-2.0
"""Generic metrics: attribute metrics against hand-made answers, Frechet distance closed forms."""

import json

import numpy as np
import pytest

from lcengine.method.metrics import attribute_metrics, frechet_distance

NAMES15 = tuple(f"attr_{k}" for k in range(15))


def test_attribute_metrics_hand_made():
    names = ("a", "b")
    requested = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    measured = np.array([[1, 1], [0, 1], [0, 1], [1, 0]])
    out = attribute_metrics(requested, measured, None, names)
    a = out["per_attribute"]["a"]
    # a: TP=1 (row 0), FN=1 (row 1), FP=1 (row 3), TN=1 (row 2)
    assert a["accuracy"] == 0.5 and a["precision"] == 0.5 and a["recall"] == 0.5
    assert a["f1"] == 0.5 and a["support"] == 4
    b = out["per_attribute"]["b"]
    # b: TP=2, FP=1 (row 0), FN=0, TN=1
    assert b["accuracy"] == 0.75
    assert b["precision"] == pytest.approx(2 / 3) and b["recall"] == 1.0
    assert b["f1"] == pytest.approx(0.8)
    assert out["overall_accuracy"] == pytest.approx(5 / 8)
    assert out["row_accuracy"] == pytest.approx(1 / 4)
    assert out["num_entries"] == 8 and out["num_rows"] == 4
    json.dumps(out, allow_nan=False)


def test_attribute_metrics_mask_and_broadcast():
    names = ("a", "b")
    measured = np.array([[1, 1], [1, 0], [0, 0]])
    out = attribute_metrics(np.array([1, 0]), measured, np.array([True, False]), names)
    assert out["per_attribute"]["a"]["accuracy"] == pytest.approx(2 / 3)
    assert out["per_attribute"]["b"]["support"] == 0
    assert out["per_attribute"]["b"]["accuracy"] is None  # nothing requested
    assert out["per_attribute"]["a"]["recall"] == pytest.approx(2 / 3)
    assert out["overall_accuracy"] == pytest.approx(2 / 3)
    # No positive requested and none measured: precision and recall undefined -> None.
    none = attribute_metrics(np.zeros((2, 1)), np.zeros((2, 1)), None, ("a",))
    assert none["per_attribute"]["a"]["precision"] is None
    assert none["per_attribute"]["a"]["accuracy"] == 1.0


def test_attribute_metrics_errors():
    with pytest.raises(ValueError, match=r"measured must have shape \[N, 15\]"):
        attribute_metrics(np.zeros(15), np.zeros((3, 14)), None, NAMES15)
    with pytest.raises(ValueError, match="requested must have shape"):
        attribute_metrics(np.zeros(14), np.zeros((3, 15)), None, NAMES15)
    with pytest.raises(ValueError, match="only 0 and 1"):
        attribute_metrics(np.full(15, 2), np.zeros((3, 15)), None, NAMES15)
    with pytest.raises(ValueError, match="mask must have shape"):
        attribute_metrics(np.zeros(15), np.zeros((3, 15)), np.ones(3, bool), NAMES15)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 5)) @ rng.normal(size=(5, 5))
    a -= a.mean(0)  # so that scaling (below) leaves the mean at 0
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    # Same covariance, shifted mean: exactly the squared distance of the means.
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    # Scaled copy: C_b = k^2 C_a, so the trace term is (1 - k)^2 tr(C_a).
    k = 3.0
    expected = (1 - k) ** 2 * np.trace(np.cov(a, rowvar=False))
    assert frechet_distance(a, k * a) == pytest.approx(expected, rel=1e-6)
    # Symmetric, and independent samples of one Gaussian are close.
    b = rng.normal(size=(2000, 5)) @ rng.normal(size=(5, 5))
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)


def test_frechet_distance_diagonal_gaussians():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(20000, 3))
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([2.0, 1.0, 0.5])
    d = frechet_distance(z * s1, rng.normal(size=(20000, 3)) * s2)
    assert d == pytest.approx(float(((s1 - s2) ** 2).sum()), abs=0.1)


def test_frechet_distance_errors():
    with pytest.raises(ValueError, match="same feature dimension"):
        frechet_distance(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(np.zeros((1, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((3, 2), np.nan), np.zeros((3, 2)))


def test_feature_diversity_is_the_mean_within_group_distance():
    from lcengine.method.metrics import feature_diversity

    f = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
    groups = np.array([0, 0, 1, 1, 2])  # pair distances 5 and 1; group 2 has no pair
    assert feature_diversity(f, groups) == pytest.approx(3.0)
    collapsed = np.repeat(f[:1], 5, axis=0)
    assert feature_diversity(collapsed, groups) == pytest.approx(0.0)
    assert feature_diversity(f[:1].repeat(2, 0), np.array([0, 1])) is None  # no pair at all
    with pytest.raises(ValueError, match="groups has 3 rows"):
        feature_diversity(f, groups[:3])
