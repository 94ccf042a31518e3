# SPDX-License-Identifier: Apache-2.0
"""Evaluation: pixel classifier, measured attributes, attribute metrics, Frechet distance."""
import json
import os

import numpy as np
import pytest
import torch

from lcengine.method.data import ATTRIBUTE_NAMES, load_mnist
from lcengine.method.evaluation import (
    CLASSIFIER_CONFIG_FILE,
    CLASSIFIER_WEIGHTS_FILE,
    PixelClassifier,
    attribute_metrics,
    evaluate_images,
    frechet_distance,
    load_classifier,
    measure_attributes,
    save_classifier,
    train_pixel_classifier,
    transform_metrics,
)


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


@pytest.fixture(scope="module")
def classifier(mnist):
    # 1,000 images x 2 epochs: a few seconds; the full 4,000 x 8 reaches ~98% (see report).
    return train_pixel_classifier(mnist.train_images[:1000], mnist.train_digits[:1000],
                                  epochs=2, progress=False)


def test_classifier_accuracy_on_heldout_subset(classifier, mnist):
    pred = classifier.predict(mnist.heldout_images[:500])
    assert pred.dtype == np.int64 and pred.shape == (500,)
    assert (pred == mnist.heldout_digits[:500]).mean() > 0.8
    assert classifier.history and not classifier.training


def test_classifier_features_are_penultimate_activations(classifier, mnist):
    f = classifier.features(mnist.heldout_images[:7])
    assert f.shape == (7, classifier.feature_dim) and f.dtype == np.float64
    assert (f >= 0).all()  # post-ReLU
    logits = classifier.out(torch.from_numpy(f).float()).detach().numpy()
    np.testing.assert_allclose(logits, classifier.logits(mnist.heldout_images[:7]), atol=1e-4)


def test_classifier_rejects_bad_input(classifier):
    with pytest.raises(ValueError, match=r"\[N, 28, 28\]"):
        classifier.predict(np.zeros((2, 28)))
    with pytest.raises(ValueError, match="digits has 3 labels for 2 images"):
        train_pixel_classifier(np.zeros((2, 28, 28)), np.array([0, 1, 2]), progress=False)
    with pytest.raises(ValueError, match="0..9"):
        train_pixel_classifier(np.zeros((2, 28, 28)), np.array([0, 10]), progress=False)


def test_classifier_save_load_round_trip(tmp_path, classifier, mnist):
    save_classifier(classifier, tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted([CLASSIFIER_CONFIG_FILE,
                                                   CLASSIFIER_WEIGHTS_FILE])
    loaded = PixelClassifier.load(tmp_path)
    x = mnist.heldout_images[:20]
    np.testing.assert_array_equal(loaded.logits(x), classifier.logits(x))
    assert loaded.history == classifier.history


def test_classifier_load_rejects_corruption(tmp_path, classifier):
    classifier.save(tmp_path)
    w = tmp_path / CLASSIFIER_WEIGHTS_FILE
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"corrupted safetensors file .*classifier\.safetensors"):
        load_classifier(tmp_path)
    classifier.save(tmp_path)
    cfg = json.loads((tmp_path / CLASSIFIER_CONFIG_FILE).read_text())
    cfg["config"]["feature_dim"] = 64
    (tmp_path / CLASSIFIER_CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="has shape"):
        load_classifier(tmp_path)


def test_measure_attributes_on_real_images(classifier, mnist):
    x = mnist.heldout_images[:200]
    m = measure_attributes(x, classifier, mnist.shape_thresholds)
    assert m.shape == (200, 15) and m.dtype == np.int8
    assert (m[:, :10].sum(1) == 1).all()
    np.testing.assert_array_equal(m[:, :10].argmax(1), classifier.predict(x))
    # Shape attributes are measured, not learned: they equal the data set's labels exactly.
    np.testing.assert_array_equal(m[:, 10:], mnist.heldout_attributes[:200, 10:])


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
        attribute_metrics(np.zeros(15), np.zeros((3, 14)), None, ATTRIBUTE_NAMES)
    with pytest.raises(ValueError, match="requested must have shape"):
        attribute_metrics(np.zeros(14), np.zeros((3, 15)), None, ATTRIBUTE_NAMES)
    with pytest.raises(ValueError, match="only 0 and 1"):
        attribute_metrics(np.full(15, 2), np.zeros((3, 15)), None, ATTRIBUTE_NAMES)
    with pytest.raises(ValueError, match="mask must have shape"):
        attribute_metrics(np.zeros(15), np.zeros((3, 15)), np.ones(3, bool), ATTRIBUTE_NAMES)


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


def test_evaluate_images(classifier, mnist):
    ref = classifier.features(mnist.heldout_images[500:])
    x = mnist.heldout_images[:300]
    real = evaluate_images(x, mnist.heldout_attributes[:300], None, classifier,
                           mnist.shape_thresholds, ref)
    assert real["overall_accuracy"] > 0.9  # shape columns are exact; digits from classifier
    assert real["per_attribute"]["thick"]["accuracy"] == 1.0
    blank = evaluate_images(np.zeros((300, 28, 28)), mnist.heldout_attributes[:300], None,
                            classifier, mnist.shape_thresholds, ref)
    assert real["fcd"] < blank["fcd"]
    assert real["num_images"] == 300
    json.dumps(real, allow_nan=False)


def test_evaluate_images_with_rules(classifier, mnist):
    names = ("thick", "has_much_ink")
    x = mnist.heldout_images[:50]
    rule = {"has_much_ink": lambda imgs: imgs.sum(axis=(1, 2)) > 0}
    out = evaluate_images(x, np.array([1, 1]), np.array([False, True]), classifier,
                          mnist.shape_thresholds, None, attribute_names=names, rules=rule)
    assert out["per_attribute"]["has_much_ink"]["accuracy"] == 1.0
    assert out["fcd"] is None
    with pytest.raises(ValueError, match="pass rules"):
        evaluate_images(x, np.array([1]), None, classifier, mnist.shape_thresholds, None,
                        attribute_names=("sparkly",))


def test_transform_metrics():
    out = transform_metrics(np.array([True, False]), np.array([10, 300]),
                            np.zeros((2, 2)), np.array([[3.0, 4.0], [0.0, 1.0]]),
                            np.zeros((2, 28, 28)), np.full((2, 28, 28), 0.5))
    assert out == {"converged_fraction": 0.5, "mean_steps": 155.0,
                   "mean_latent_distance": 3.0, "mean_pixel_distance": 0.5, "num_rows": 2}
    with pytest.raises(ValueError, match="transform_metrics expects"):
        transform_metrics(np.ones(2), np.ones(3), np.zeros((2, 2)), np.zeros((2, 2)),
                          np.zeros((2, 4)), np.zeros((2, 4)))
