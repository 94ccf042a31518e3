# SPDX-License-Identifier: Apache-2.0
"""Requests over the digits' attributes: the vocabulary (digit group, bare digits, negation
aliases) with the method's parser, and with the attribute-vector baseline."""

import numpy as np
import pytest
import torch

from lcengine.apps.digits.data import ATTRIBUTE_NAMES, VOCABULARY
from lcengine.method.baseline import AttributeVectorBaseline
from lcengine.method.requests import parse_request as parse_with_vocabulary


def parse_request(request, attribute_names=ATTRIBUTE_NAMES):
    """The method's parser with the digits' vocabulary."""
    return parse_with_vocabulary(request, attribute_names, VOCABULARY)


def _req(values_mask):
    values, mask = values_mask
    return {ATTRIBUTE_NAMES[i]: int(values[i]) for i in np.flatnonzero(mask)}


def test_parse_request_forms_agree():
    expected = {**{f"digit_{k}": 0 for k in range(10)}, "digit_7": 1, "thick": 1, "slant_right": 1}
    assert _req(parse_request("digit_7,thick,slant_right")) == expected
    assert _req(parse_request("7 thick slant_right")) == expected
    assert _req(parse_request(["7", "THICK", "slant_right=1"])) == expected
    assert _req(parse_request({"digit_7": 1, "thick": True, "slant_right": 1})) == expected


def test_parse_request_negations_and_aliases():
    values, mask = parse_request("7 !slant_right thin")
    assert values.dtype == np.int8 and mask.dtype == np.bool_ and values.shape == (15,)
    r = _req((values, mask))
    assert r["slant_right"] == 0 and r["thick"] == 0 and r["digit_7"] == 1
    assert _req(parse_request("not_wide,-tall,large_ink=0")) == {
        "wide": 0,
        "tall": 0,
        "large_ink": 0,
    }
    # A digit asked to be 0 constrains only that digit.
    assert _req(parse_request("!digit_3")) == {"digit_3": 0}
    assert _req(parse_request({"thick": 0})) == {"thick": 0}


def test_parse_request_custom_vocabulary():
    names = ATTRIBUTE_NAMES + ("has_loop",)
    values, mask = parse_request("3 has_loop", names)
    assert values.shape == (16,) and values[-1] == 1 and mask[-1]


@pytest.mark.parametrize(
    "bad, match",
    [
        ("", "empty"),
        ("  , ", "empty"),
        ({}, "empty"),
        ("digit_7 sparkly", r"unknown attribute name\(s\) \['sparkly'\].*valid names"),
        ("12", "unknown"),
        ("thick !thick", "contradictory"),
        ("3 7", "more than one digit"),
        ({"thick": 2}, "0 or 1"),
        ("thick=yes", "0 or 1"),
    ],
)
def test_parse_request_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        parse_request(bad)


def test_parse_request_type_errors():
    with pytest.raises(TypeError):
        parse_request(7)
    with pytest.raises(TypeError):
        parse_request(["thick", 3])


def test_works_with_parse_request_vocabulary():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 4))
    att = rng.integers(0, 2, size=(300, 15)).astype(np.int8)
    att[:, :10] = 0
    att[np.arange(300), np.arange(300) % 10] = 1
    b = AttributeVectorBaseline(ATTRIBUTE_NAMES, one_hot_groups=VOCABULARY.one_hot_groups).fit(
        torch.from_numpy(z), att
    )
    values, mask = parse_request("7 thick")
    out = b.apply(np.zeros((5, 4)), values, mask)
    expected = b.pos_centroids[7] - b.global_centroid + (1 - b.frequencies[10]) * b.vectors[10]
    np.testing.assert_allclose(out, np.tile(expected, (5, 1)), atol=1e-6)
    assert b.attribute_names == ATTRIBUTE_NAMES


def test_the_digits_declare_their_attributes():
    from lcengine.apps.digits.data import ATTRIBUTES, DIGIT_COLUMNS
    from lcengine.method.requests import parse_request as parse

    # the declared spec keeps the column order of every checkpoint and figure
    assert ATTRIBUTES.columns == ATTRIBUTE_NAMES and DIGIT_COLUMNS == list(range(10))
    assert ATTRIBUTES.groups == {"digit": tuple(str(k) for k in range(10))}
    assert ATTRIBUTES.binary == ("thick", "slant_right", "wide", "tall", "large_ink")
    for request in ("7 thin", "digit=7 !thick", {"digit": 7, "thin": 1}):
        assert _req(parse(request, ATTRIBUTES)) == _req(parse_request("digit_7 !thick")), request
    with pytest.raises(ValueError, match=r"more than one digit requested \['digit_3', 'digit_7'\]"):
        parse("3 7", ATTRIBUTES)
    with pytest.raises(ValueError, match="no class of group 'digit'"):
        parse("7 !digit", ATTRIBUTES)
    with pytest.raises(ValueError, match="group 'digit' has no class '12'"):
        parse("digit=12", ATTRIBUTES)
