# SPDX-License-Identifier: Apache-2.0
"""Attribute measurement on images (classifier digits, measured shapes, rules) and FCD."""

import json

import numpy as np
import pytest

from lcengine.apps.digits.data import ATTRIBUTE_NAMES
from lcengine.apps.digits.evaluation import measure_attributes
from lcengine.method.metrics import attribute_metrics, frechet_distance


def test_measure_attributes_on_real_images(classifier, mnist):
    x = mnist.heldout_images[:200]
    m = measure_attributes(x, classifier, mnist.shape_thresholds)
    assert m.shape == (200, 15) and m.dtype == np.int8
    assert (m[:, :10].sum(1) == 1).all()
    np.testing.assert_array_equal(m[:, :10].argmax(1), classifier.predict(x))
    # Shape attributes are measured, not learned: they equal the data set's labels exactly.
    np.testing.assert_array_equal(m[:, 10:], mnist.heldout_attributes[:200, 10:])


def test_measured_real_images_score_high_and_fcd_ranks_them(classifier, mnist):
    ref = classifier.features(mnist.heldout_images[500:])
    x = mnist.heldout_images[:300]
    real = attribute_metrics(
        mnist.heldout_attributes[:300],
        measure_attributes(x, classifier, mnist.shape_thresholds),
        None,
        ATTRIBUTE_NAMES,
    )
    assert real["overall_accuracy"] > 0.9  # shape columns are exact; digits from classifier
    assert real["per_attribute"]["thick"]["accuracy"] == 1.0
    blank = np.zeros((300, 28, 28))
    assert frechet_distance(classifier.features(x), ref) < frechet_distance(
        classifier.features(blank), ref
    )
    json.dumps(real, allow_nan=False)


def test_measure_attributes_with_rules(classifier, mnist):
    x = mnist.heldout_images[:50]
    names = ("thick", "has_much_ink", "digit_3")
    rules = {"has_much_ink": lambda imgs: imgs.sum(axis=(1, 2)) > 0}
    m = measure_attributes(x, classifier, mnist.shape_thresholds, names, rules)
    assert m.shape == (50, 3) and m.dtype == np.int8
    full = measure_attributes(x, classifier, mnist.shape_thresholds)
    np.testing.assert_array_equal(m[:, 0], full[:, ATTRIBUTE_NAMES.index("thick")])
    np.testing.assert_array_equal(m[:, 1], 1)
    np.testing.assert_array_equal(m[:, 2], full[:, 3])
    with pytest.raises(ValueError, match="pass rules"):
        measure_attributes(x, classifier, mnist.shape_thresholds, ("sparkly",))
    with pytest.raises(ValueError, match="one bool per item"):
        measure_attributes(
            x, classifier, mnist.shape_thresholds, ("odd",), {"odd": lambda imgs: np.ones(3, bool)}
        )
    with pytest.raises(TypeError, match="PixelClassifier"):
        measure_attributes(x, object(), mnist.shape_thresholds)
