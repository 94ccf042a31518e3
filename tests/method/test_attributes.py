# SPDX-License-Identifier: Apache-2.0
"""AttributeSpec: declared binary attributes and categorical groups, their columns, JSON round
trip, request validation, conversion of the older names-plus-vocabulary form, and its use by
LatentConstraints (requests, metrics, checkpoints old and new) and the CLI."""

import json
import shutil

import numpy as np
import pytest
import torch

from lcengine.method import AttributeSpec, LatentConstraints, RequestVocabulary
from lcengine.method.metrics import attribute_metrics
from lcengine.method.requests import parse_request, vocabulary_of
from support.method_toys import TOY_APPLICATION, TOY_APPLICATION_PATH, tiny_training, toy_data
from support.method_toys import toy_model as make_toy_model

SPEC = AttributeSpec(
    binary=["smiling", "young"],
    groups={"hair": ["black", "blond", "brown"], "size": ["s", "m", "l"]},
    negations={"old": "young"},
    aliases={"blonde": "hair_blond"},
)


def _req(spec, values_mask):
    values, mask = values_mask
    return {spec.columns[i]: int(values[i]) for i in np.flatnonzero(mask)}


def test_columns_groups_and_order():
    assert SPEC.columns == (
        "hair_black",
        "hair_blond",
        "hair_brown",
        "size_s",
        "size_m",
        "size_l",
        "smiling",
        "young",
    )
    assert len(SPEC) == SPEC.num_columns == 8
    assert SPEC.column_groups == ("hair",) * 3 + ("size",) * 3 + (None, None)
    assert SPEC.group_of("size_m") == "size" and SPEC.group_of("young") is None
    assert SPEC.group_columns("size") == [3, 4, 5] and SPEC.binary_columns == [6, 7]
    assert SPEC.group_members()["hair"] == ("hair_black", "hair_blond", "hair_brown")
    assert SPEC.column_name("hair", "blond") == "hair_blond" and SPEC.index("YOUNG") == 7
    ordered = AttributeSpec(binary=["a", "b"], groups={"g": ["x", "y"]}, order=["a", "g", "b"])
    assert ordered.columns == ("a", "g_x", "g_y", "b")
    assert AttributeSpec(groups={"g": ["x"]}, separator=".").columns == ("g.x",)
    zs = SPEC.with_binary(["round"])
    assert zs.columns == SPEC.columns + ("round",) and zs.group_columns("hair") == [0, 1, 2]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "at least one"),
        ({"groups": {"g": []}}, "group 'g' has no classes"),
        ({"groups": {"g": ["x", "X"]}}, "group 'g' classes repeat"),
        ({"binary": ["g"], "groups": {"g": ["x"]}}, "attribute and group names repeat 'g'"),
        ({"binary": ["g_x"], "groups": {"g": ["x"]}}, "column names repeat 'g_x'"),
        ({"binary": ["a"], "order": ["a", "b"]}, r"not declared \['b'\]"),
        ({"binary": ["a", "b"], "order": ["a"]}, r"missing \['b'\]"),
        ({"binary": ["a"], "negations": {"not_a": "b"}}, "names 'b', which is not a column"),
        ({"binary": ["a", "b"], "aliases": {"b": "a"}}, "already an attribute name"),
        ({"binary": [3]}, r"binary\[0\] must be a string"),
    ],
)
def test_bad_specs_name_the_attribute_or_group(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        AttributeSpec(**kwargs)


def test_json_round_trip_and_errors_name_file_and_key():
    d = json.loads(json.dumps(SPEC.to_dict()))
    assert AttributeSpec.from_dict(d) == SPEC
    assert AttributeSpec.from_dict(d).columns == SPEC.columns
    assert AttributeSpec.from_dict({"binary": ["a"]}) == AttributeSpec(binary=["a"])
    for bad, named in [
        ({"groups": {"hair": "black"}}, "attributes.groups['hair'] must be a list"),
        ({"groups": {"hair": []}}, "attributes.groups['hair'] must hold at least one"),
        ({"groups": {"hair": ["a", 3]}}, "attributes.groups['hair'][1]"),
        ({"binary": "a"}, "attributes.binary must be a list"),
        ({"negations": {"old": 1}}, "attributes.negations['old']"),
        ({"separator": 1}, "attributes.separator"),
        ({"binary": ["a"], "colour": 1}, "unknown AttributeSpec keys ['colour']"),
        ({"binary": ["a", "a"]}, "attributes: attribute and group names repeat 'a'"),
        ([], "attributes must be a JSON object"),
    ]:
        with pytest.raises(ValueError) as info:
            AttributeSpec.from_dict(bad, source="run/c.json")
        msg = str(info.value)
        assert msg.startswith("run/c.json: ") and named in msg, msg


def test_requests_over_a_spec():
    one_of = {"hair_black": 0, "hair_blond": 1, "hair_brown": 0}
    for request in ("blond", "hair=blond", "hair_blond", "BLONDE", {"hair": "blond"}):
        assert _req(SPEC, parse_request(request, SPEC)) == one_of, request
    assert _req(SPEC, parse_request("s old !smiling", SPEC)) == {
        "size_s": 1,
        "size_m": 0,
        "size_l": 0,
        "young": 0,
        "smiling": 0,
    }
    # a class asked to be 0 constrains that class only; "!group" asks for no class
    assert _req(SPEC, parse_request("!hair_brown", SPEC)) == {"hair_brown": 0}
    assert _req(SPEC, parse_request("!hair", SPEC)) == dict.fromkeys(one_of, 0)
    assert _req(SPEC, parse_request("blond !hair_brown", SPEC)) == one_of
    assert _req(SPEC, parse_request({"young": True, "size": "l"}, SPEC))["size_l"] == 1
    # a class label that two groups share is no bare word; group=class still works
    shared = AttributeSpec(groups={"a": ["x", "y"], "b": ["x", "z"]})
    assert _req(shared, parse_request("b=x", shared)) == {"b_x": 1, "b_z": 0}
    with pytest.raises(ValueError, match=r"unknown attribute name\(s\) \['x'\]"):
        parse_request("x", shared)


@pytest.mark.parametrize(
    "bad, match",
    [
        ("sparkly", r"unknown attribute name\(s\) \['sparkly'\].*groups \{'hair'"),
        ("black blond", r"more than one hair requested \['hair_black', 'hair_blond'\]"),
        ("hair=black blond", "more than one hair requested"),
        ("blond !hair", r"'hair_blond' requested with '!hair' \(no class of group 'hair'\)"),
        ("blond !hair_blond", "'hair_blond' asked as both 1 and 0"),
        ("hair", "name a class of group 'hair'"),
        ("hair=red", r"group 'hair' has no class 'red'; its classes are \['black'"),
        ({"hair": True}, "a class of group 'hair' is named by its label"),
        ("young old", "'young' asked as both 1 and 0"),
        ("young=2", "0 or 1"),
        ({"young": 2}, "0 or 1"),
        ("", "empty"),
    ],
)
def test_bad_requests_name_the_attribute_or_group(bad, match):
    with pytest.raises(ValueError, match=match):
        parse_request(bad, SPEC)


def test_check_values_refuses_two_classes_of_a_group():
    v = np.zeros(8, np.int8)
    v[[0, 1]] = 1
    with pytest.raises(ValueError, match="more than one hair requested"):
        SPEC.check_values(v)
    SPEC.check_values(v, np.array([True, False] + [True] * 6))  # the second is unrequested
    with pytest.raises(ValueError, match=r"\(row 1\)"):
        SPEC.check_values(np.stack([np.zeros(8, np.int8), v]))


def test_the_older_form_converts_to_a_spec():
    names = ("class_0", "class_1", "class_2", "big", "round")
    vocab = RequestVocabulary(
        one_hot_groups={"class": names[:3]},
        negation_aliases={"small": "big"},
        shorthands={"0": "class_0", "1": "class_1", "2": "class_2", "huge": "big"},
    )
    spec = AttributeSpec.from_names(names, vocab)
    assert spec.columns == names and spec.groups == {"class": ("0", "1", "2")}
    assert spec.binary == ("big", "round") and spec.negations == {"small": "big"}
    assert spec.aliases == {"huge": "big"}  # the bare labels need no alias
    assert vocabulary_of(spec) == vocab  # and back
    assert parse_request("1 small", names, vocab)[0].tolist() == [0, 1, 0, 0, 0]
    assert AttributeSpec.from_names(("a", "b")) == AttributeSpec(binary=["a", "b"])
    # groups the old form allowed but a spec cannot express are refused, naming the group
    with pytest.raises(ValueError, match="one-hot group 'class'.*consecutive columns"):
        AttributeSpec.from_names(("class_0", "big", "class_1"), vocab)
    with pytest.raises(ValueError, match="one-hot group 'g'.*named 'g_<class>'"):
        AttributeSpec.from_names(("red", "green"), RequestVocabulary(one_hot_groups={"g": ["red"]}))


def test_metrics_per_group_identity_is_the_argmax_over_the_group():
    spec = AttributeSpec(binary=["big"], groups={"c": ["0", "1", "2"]})
    requested = np.array([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1], [0, 1, 0, 1]])
    measured = np.array([[1, 0, 0, 1], [0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    mask = np.ones((4, 4), bool)
    mask[1, :3] = False  # row 1 requests no class
    m = attribute_metrics(requested, measured, mask, spec)
    g = m["per_group"]["c"]
    # rows 0, 2, 3 request a class; row 3 is measured with no class: wrong
    assert g == {"accuracy": 2 / 3, "support": 3, "columns": ["c_0", "c_1", "c_2"]}
    assert m["row_accuracy"] == 2 / 4  # every requested attribute right: rows 0 and 1
    assert attribute_metrics(requested, measured, None, spec.columns)["per_group"] == {}


def _toy_spec_run(tmp_path):
    """A toy LatentConstraints over a spec with a group: side = left/right from a0."""
    spec = AttributeSpec(binary=["a1", "a2"], groups={"side": ["left", "right"]})
    x, att = toy_data(256)
    att4 = np.concatenate([np.stack([1 - att[:, 0], att[:, 0]], 1), att[:, 1:]], 1)
    lc = LatentConstraints(
        make_toy_model(), spec, training=tiny_training(attribute_steps=5, realism_steps=5)
    )
    lc.fit(x, att4, progress=False)
    return lc, spec


def test_latent_constraints_use_the_spec_and_checkpoints_store_it(tmp_path):
    lc, spec = _toy_spec_run(tmp_path)
    assert lc.spec is spec and lc.attribute_names == spec.columns
    assert lc.trainer.attribute.num_attributes == 4  # the critic's outputs: the spec's columns
    assert lc.parse("right a1")[0].tolist() == [0, 1, 1, 0]
    with pytest.raises(ValueError, match="more than one side"):
        lc.parse("left right")
    with pytest.raises(ValueError, match="more than one side"):
        lc.parse(np.array([1, 1, 0, 0]))
    res = lc.sample("side=left", 4, method="actor")
    assert res.attributes[:, :2].tolist() == [[1, 0]] * 4
    folder = lc.save(tmp_path / "c")
    record = json.loads((folder / "constraints.json").read_text())
    assert record["attributes"] == spec.to_dict() and "vocabulary" not in record
    back = LatentConstraints.load(folder, make_toy_model())
    assert back.spec == spec and back.parse("right")[0].tolist() == [0, 1, 0, 0]
    # a vocabulary and a spec together are refused
    with pytest.raises(ValueError, match="not a vocabulary"):
        LatentConstraints(make_toy_model(), spec, vocabulary=RequestVocabulary())
    # zero-shot names must not collide with the spec's words
    with pytest.raises(ValueError, match="cannot be added"):
        lc.add_zero_shot_constraint("side", lambda xs: xs[:, 0] > 0, progress=False)


def test_checkpoints_written_before_the_spec_load_by_conversion(tmp_path):
    lc, spec = _toy_spec_run(tmp_path)
    folder = lc.save(tmp_path / "c")
    record = json.loads((folder / "constraints.json").read_text())
    del record["attributes"]  # the older record: names plus a vocabulary
    record["vocabulary"] = {
        "one_hot_groups": {"side": ["side_left", "side_right"]},
        "negation_aliases": {"low": "a1"},
        "shorthands": {"left": "side_left", "right": "side_right"},
    }
    old = shutil.copytree(folder, tmp_path / "old")
    (old / "constraints.json").write_text(json.dumps(record))
    back = LatentConstraints.load(old, make_toy_model())
    assert back.spec.columns == spec.columns and back.spec.groups == spec.groups
    assert back.spec.negations == {"low": "a1"} and back.spec.aliases == {}
    assert back.parse("left low")[0].tolist() == [1, 0, 0, 0]
    # a record with neither attributes nor a vocabulary: every name binary
    del record["vocabulary"]
    (old / "constraints.json").write_text(json.dumps(record))
    assert LatentConstraints.load(old, make_toy_model()).spec.groups == {}
    # an old vocabulary that cannot convert names the file and the group
    record["vocabulary"] = {"one_hot_groups": {"g": ["a1", "a2"]}}
    (old / "constraints.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"constraints.json.*one-hot group 'g'"):
        LatentConstraints.load(old, make_toy_model())


def test_cli_sample_request_errors_are_one_line_naming_the_attribute(tmp_path, capsys):
    from lcengine.cli import main
    from lcengine.method.run import CONSTRAINTS_DIR, write_run_file

    lc, _ = _toy_spec_run(tmp_path)
    folder = tmp_path / "run"
    n = torch.get_num_threads()
    config = TOY_APPLICATION.default_config(fast=True, seed=0, training_overrides={})
    write_run_file(folder, TOY_APPLICATION_PATH, config)
    lc.save(folder / CONSTRAINTS_DIR)
    torch.set_num_threads(n)
    for request, named in [
        ("left sparkly", "['sparkly']"),
        ("left right", "more than one side"),
        ("right !side", "group 'side'"),
        ("side=up", "group 'side' has no class 'up'"),
    ]:
        assert main(["sample", "--run", str(folder), "--request", request, "-n", "2"]) == 2
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lcengine sample: error: "), err
        assert named in lines[0], err
