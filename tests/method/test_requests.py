# SPDX-License-Identifier: Apache-2.0
"""Requests: parsing with a vocabulary, target checks, completion of partial requests."""

import numpy as np
import pytest

from lcengine.method.requests import (
    RequestVocabulary,
    as_binary_array,
    check_targets,
    complete_requests,
    parse_request,
)

NAMES = ("class_0", "class_1", "class_2", "big", "round")
VOCAB = RequestVocabulary(
    one_hot_groups={"class": NAMES[:3]},
    negation_aliases={"small": "big"},
    shorthands={"0": "class_0", "1": "class_1", "2": "class_2"},
)


def _req(values_mask, names=NAMES):
    values, mask = values_mask
    return {names[i]: int(values[i]) for i in np.flatnonzero(mask)}


def test_plain_names_need_no_vocabulary():
    values, mask = parse_request("big !round", NAMES)
    assert values.dtype == np.int8 and mask.dtype == np.bool_ and values.shape == (5,)
    assert _req((values, mask)) == {"big": 1, "round": 0}
    assert _req(parse_request(["BIG", "round=0"], NAMES)) == {"big": 1, "round": 0}
    assert _req(parse_request({"big": True, "round": 0}, NAMES)) == {"big": 1, "round": 0}
    assert _req(parse_request("not_big,-round", NAMES)) == {"big": 0, "round": 0}


def test_vocabulary_groups_aliases_and_shorthands():
    expected = {"class_0": 0, "class_1": 1, "class_2": 0, "big": 0}
    assert _req(parse_request("1 small", NAMES, VOCAB)) == expected
    assert _req(parse_request("class_1 !big", NAMES, VOCAB)) == expected
    # a member asked to be 0 constrains only that member
    assert _req(parse_request("!class_2", NAMES, VOCAB)) == {"class_2": 0}
    # without the vocabulary the same words are unknown
    with pytest.raises(ValueError, match="unknown attribute name"):
        parse_request("1 small", NAMES)
    # the group label names the contradiction
    with pytest.raises(ValueError, match="more than one class"):
        parse_request("0 2", NAMES, VOCAB)
    with pytest.raises(
        ValueError, match=r"groups \{'class': \['0', '1', '2'\]\}.*negations \['small'\]"
    ):
        parse_request("huge", NAMES, VOCAB)


def test_vocabulary_round_trips_through_json():
    d = VOCAB.to_dict()
    assert RequestVocabulary.from_dict(d) == VOCAB
    assert d["one_hot_groups"] == {"class": list(NAMES[:3])}
    assert VOCAB.group_columns(NAMES) == {"class": [0, 1, 2]}
    assert VOCAB.group_columns(("big",)) == {}  # groups absent from the names are left out
    with pytest.raises(ValueError, match="unknown RequestVocabulary keys"):
        RequestVocabulary.from_dict({"groups": {}})
    with pytest.raises(ValueError, match="no members"):
        RequestVocabulary(one_hot_groups={"empty": ()})


@pytest.mark.parametrize(
    "bad, match",
    [
        ("", "empty"),
        ({}, "empty"),
        ("big sparkly", r"unknown attribute name\(s\) \['sparkly'\].*valid names"),
        ("big !big", "contradictory"),
        ({"big": 2}, "0 or 1"),
        ("big=yes", "0 or 1"),
    ],
)
def test_parse_request_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        parse_request(bad, NAMES, VOCAB)


def test_check_targets_and_binary_arrays():
    y, mask = check_targets(np.array([[1, 0], [0, 1]]), None, ("a", "b"))
    assert y.dtype == np.int8 and mask.all() and mask.flags.writeable
    assert as_binary_array(np.array([True, False]), "v").tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"y must have shape \[N, 2\]"):
        check_targets(np.ones((2, 3)), None, ("a", "b"))
    with pytest.raises(ValueError, match="at least one requested"):
        check_targets(np.ones((1, 2)), np.zeros((1, 2), bool), ("a", "b"))
    with pytest.raises(ValueError, match="only 0 and 1"):
        as_binary_array(np.array([0.5]), "v")
    with pytest.raises(ValueError, match=r"v must have shape \[3\]"):
        as_binary_array(np.array([0, 1]), "v", shape=(3,))


def test_complete_requests():
    table = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1]], dtype=np.int8)
    values = np.array([1, 0, 0, 1], dtype=np.int8)  # 4th column: a zero-shot attribute
    mask = np.array([True, False, False, True])
    out = complete_requests(values, mask, table, 50, seed=0)
    assert out.shape == (50, 4) and out.dtype == np.int8
    assert (out[:, 0] == 1).all() and (out[:, 3] == 1).all()
    # unrequested columns come from rows with a0 = 1 only
    assert {tuple(r) for r in out[:, :3]} <= {(1, 0, 1), (1, 1, 0)}
    # no row matches (a0=0, a1=0): nearest rows, requested values still win
    out = complete_requests(np.array([0, 0, 0]), np.array([True, True, False]), table, 5)
    assert (out[:, :2] == 0).all()
    with pytest.raises(ValueError):
        complete_requests(values, mask[:3], table, 5)
