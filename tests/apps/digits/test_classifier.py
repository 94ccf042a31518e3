# SPDX-License-Identifier: Apache-2.0
"""The digits' evaluation classifier: accuracy, features, bad input, checkpoints."""

import json
import os

import numpy as np
import pytest
import torch

from lcengine.apps.digits.classifier import (
    CLASSIFIER_CONFIG_FILE,
    PixelClassifier,
    load_classifier,
    save_classifier,
    train_pixel_classifier,
)


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
    weights = json.loads((tmp_path / CLASSIFIER_CONFIG_FILE).read_text())["weights_file"]
    assert sorted(os.listdir(tmp_path)) == sorted(
        [".classifier.lock", CLASSIFIER_CONFIG_FILE, weights]
    )
    loaded = PixelClassifier.load(tmp_path)
    x = mnist.heldout_images[:20]
    np.testing.assert_array_equal(loaded.logits(x), classifier.logits(x))
    assert loaded.history == classifier.history


def test_classifier_load_rejects_corruption(tmp_path, classifier):
    classifier.save(tmp_path)
    cfg = json.loads((tmp_path / CLASSIFIER_CONFIG_FILE).read_text())
    w = tmp_path / cfg["weights_file"]
    blob = w.read_bytes()
    w.write_bytes(blob[:100])
    with pytest.raises(ValueError, match=r"classifier\.[0-9a-f]{16}\.safetensors does not match"):
        load_classifier(tmp_path)
    w.write_bytes(blob)
    cfg["config"]["feature_dim"] = 64
    (tmp_path / CLASSIFIER_CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match the configuration"):
        load_classifier(tmp_path)
