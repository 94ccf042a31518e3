# SPDX-License-Identifier: Apache-2.0
"""Configurations read from files (a checkpoint's constraints.json, a run's run.json) are checked
key by key: a tampered value raises ValueError naming the file and the key, and a network width
is checked before anything is allocated."""

import json
import math
import shutil
import time

import pytest
import torch

from lcengine.method import LatentConstraints
from lcengine.method.config import SamplingConfig, TrainingConfig
from lcengine.method.critics import Actor, AttributeCritic, RealismCritic
from lcengine.method.requests import RequestVocabulary
from lcengine.validation import MAX_LAYERS, MAX_PARAMETERS, MAX_WIDTH
from support.method_toys import NAMES, tiny_training, toy_data, toy_model

SOURCE = "run/constraints/constraints.json"
HUGE = 10**9

TRAINING_TAMPERED = [
    ("hidden", [32, HUGE], "training.hidden[1]"),
    ("hidden", [0], "training.hidden[0]"),
    ("hidden", [], "training.hidden"),
    ("hidden", [8] * (MAX_LAYERS + 1), "training.hidden"),
    ("hidden", "256", "training.hidden"),
    ("hidden", 256, "training.hidden"),
    ("hidden", [8.5], "training.hidden[0]"),
    ("hidden", [True], "training.hidden[0]"),
    ("attribute_hidden", [MAX_WIDTH + 1], "training.attribute_hidden[0]"),
    ("embed_dim", HUGE, "training.embed_dim"),
    ("embed_dim", -1, "training.embed_dim"),
    ("embed_dim", "32", "training.embed_dim"),
    ("activation", "tanh", "training.activation"),
    ("activation", 1, "training.activation"),
    ("batch_size", 0, "training.batch_size"),
    ("batch_size", HUGE, "training.batch_size"),
    ("attribute_batch_size", -5, "training.attribute_batch_size"),
    ("attribute_steps", -1, "training.attribute_steps"),
    ("attribute_steps", 1.5, "training.attribute_steps"),
    ("realism_steps", "6000", "training.realism_steps"),
    ("realism_steps", 2**40, "training.realism_steps"),
    ("attribute_lr", 0.0, "training.attribute_lr"),
    ("realism_lr", -1e-4, "training.realism_lr"),
    ("actor_lr", math.inf, "training.actor_lr"),
    ("actor_lr", math.nan, "training.actor_lr"),
    ("actor_lr", "1e-4", "training.actor_lr"),
    ("betas", [0.0, 1.0], "training.betas[1]"),
    ("betas", [-0.1, 0.9], "training.betas[0]"),
    ("betas", [0.9], "training.betas"),
    ("betas", "0.9", "training.betas"),
    ("gp_weight", -1.0, "training.gp_weight"),
    ("prior_fake_prob", 1.5, "training.prior_fake_prob"),
    ("actor_every", 0, "training.actor_every"),
    ("lambda_dist", None, "training.lambda_dist"),
    ("actor_attribute_weight", -2, "training.actor_attribute_weight"),
    ("log_every", 0, "training.log_every"),
    ("seed", -1, "training.seed"),
    ("seed", 2**64, "training.seed"),
    ("critic_hidden", [8], "training: unknown TrainingConfig keys ['critic_hidden']"),
]

SAMPLING_TAMPERED = [
    ("steps", -1, "steps"),
    ("steps", 2**40, "steps"),
    ("steps", 3.0, "steps"),
    ("steps", "300", "steps"),
    ("lr", 0, "lr"),
    ("lr", math.inf, "lr"),
    ("w_realism", -1.0, "w_realism"),
    ("w_attr", math.nan, "w_attr"),
    ("w_dist", "0.01", "w_dist"),
    ("tau_r", 1.0, "tau_r"),
    ("tau_r", 0.0, "tau_r"),
    ("tau_a", 0.3, "tau_a"),
    ("tau_a", True, "tau_a"),
    ("step", 3, "unknown SamplingConfig keys ['step']"),
]


def _message(exc_info) -> str:
    return str(exc_info.value)


@pytest.mark.parametrize(("field", "value", "named"), TRAINING_TAMPERED)
def test_tampered_training_config_names_the_file_and_the_key(field, value, named):
    d = TrainingConfig().to_dict()
    d[field] = value
    with pytest.raises(ValueError) as exc_info:
        TrainingConfig.from_dict(d, source=SOURCE)
    msg = _message(exc_info)
    assert msg.startswith(f"{SOURCE}: {named}"), msg


@pytest.mark.parametrize(("field", "value", "named"), SAMPLING_TAMPERED)
@pytest.mark.parametrize("key", ["sampling", "transform"])
def test_tampered_sampling_config_names_the_file_and_the_key(key, field, value, named):
    d = SamplingConfig().to_dict()
    d[field] = value
    with pytest.raises(ValueError) as exc_info:
        SamplingConfig.from_dict(d, source=SOURCE, key=key)
    msg = _message(exc_info)
    expected = f"{key}: {named}" if named.startswith("unknown") else f"{key}.{named}"
    assert msg.startswith(f"{SOURCE}: {expected}"), msg


@pytest.mark.parametrize("cls", [TrainingConfig, SamplingConfig])
@pytest.mark.parametrize("value", [[1, 2], "hidden", None, 3])
def test_a_config_that_is_not_an_object_is_refused(cls, value):
    with pytest.raises(ValueError, match=f"^{SOURCE}: .* must be a JSON object"):
        cls.from_dict(value, source=SOURCE)


def test_from_dict_without_source_names_the_key_and_round_trips():
    with pytest.raises(ValueError, match=r"^training\.hidden\[0\] must be in \[1, 65536\]"):
        TrainingConfig.from_dict({"hidden": [HUGE]})
    cfg = TrainingConfig(hidden=[8, 8], betas=[0, 0.9], realism_lr=1)
    back = TrainingConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.hidden == (8, 8) and isinstance(back.realism_lr, float)
    assert TrainingConfig.from_dict({}) == TrainingConfig()  # keys left out: defaults
    s = SamplingConfig(steps=0, lr=2)
    assert SamplingConfig.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_constructors_check_the_same_ranges():
    with pytest.raises(ValueError, match=r"TrainingConfig\.hidden\[0\]"):
        TrainingConfig(hidden=(HUGE,))
    with pytest.raises(TypeError, match=r"TrainingConfig\.hidden"):
        TrainingConfig(hidden="256")
    with pytest.raises(ValueError, match=r"TrainingConfig\.betas\[1\]"):
        TrainingConfig(betas=(0.5, 1.5))
    with pytest.raises(ValueError, match=r"SamplingConfig\.steps"):
        SamplingConfig(steps=-1)


VOCABULARY_TAMPERED = [
    ({"one_hot_groups": {"digit": "class_0"}}, "vocabulary.one_hot_groups['digit']"),
    ({"one_hot_groups": {"digit": []}}, "vocabulary.one_hot_groups['digit']"),
    ({"one_hot_groups": {"digit": ["a", 3]}}, "vocabulary.one_hot_groups['digit'][1]"),
    ({"one_hot_groups": ["a", "b"]}, "vocabulary.one_hot_groups must be a JSON object"),
    ({"negation_aliases": {"thin": ["thick"]}}, "vocabulary.negation_aliases['thin']"),
    ({"shorthands": {"7": 7}}, "vocabulary.shorthands['7']"),
    ({"shorthands": "7"}, "vocabulary.shorthands must be a JSON object"),
    ({"groups": {}}, "vocabulary: unknown RequestVocabulary keys ['groups']"),
    ([], "vocabulary must be a JSON object"),
]


@pytest.mark.parametrize(("d", "named"), VOCABULARY_TAMPERED)
def test_tampered_vocabulary_names_the_file_and_the_key(d, named):
    with pytest.raises(ValueError) as exc_info:
        RequestVocabulary.from_dict(d, source=SOURCE)
    msg = _message(exc_info)
    assert msg.startswith(f"{SOURCE}: {named}"), msg


def test_vocabulary_round_trips():
    v = RequestVocabulary(
        one_hot_groups={"class": ("a", "b")}, negation_aliases={"x": "a"}, shorthands={"1": "b"}
    )
    assert RequestVocabulary.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    assert RequestVocabulary.from_dict({}) == RequestVocabulary()


CRITIC_TAMPERED = [
    ({"hidden": [HUGE]}, "zero_shot[0].critic.hidden[0]"),
    ({"hidden": "32"}, "zero_shot[0].critic.hidden"),
    ({"hidden": [8] * (MAX_LAYERS + 1)}, "zero_shot[0].critic.hidden"),
    ({"latent_dim": HUGE}, "zero_shot[0].critic.latent_dim"),
    ({"latent_dim": 4.0}, "zero_shot[0].critic.latent_dim"),
    ({"num_attributes": 0}, "zero_shot[0].critic.num_attributes"),
    ({"activation": "gelu"}, "zero_shot[0].critic.activation"),
    ({"bias": True}, "zero_shot[0].critic: unknown AttributeCritic keys ['bias']"),
    ({"hidden": [MAX_WIDTH] * 3}, "zero_shot[0].critic: AttributeCritic: layers"),
]


@pytest.mark.parametrize(("change", "named"), CRITIC_TAMPERED)
def test_tampered_critic_config_names_the_file_and_the_key(change, named):
    d = AttributeCritic(4, 1, (8,)).config()
    d.update(change)
    with pytest.raises(ValueError) as exc_info:
        AttributeCritic.from_config(d, source=SOURCE, key="zero_shot[0].critic")
    msg = _message(exc_info)
    assert msg.startswith(f"{SOURCE}: {named}"), msg


def test_critic_from_config_round_trips_and_needs_its_dims():
    for net in (RealismCritic(4, 3, (8, 8), 2), AttributeCritic(4, 3, (8,)), Actor(4, 3, (8,), 2)):
        back = type(net).from_config(json.loads(json.dumps(net.config())))
        assert type(back) is type(net) and back.config() == net.config()
    with pytest.raises(ValueError, match=r"missing RealismCritic keys \['num_attributes'\]"):
        RealismCritic.from_config({"latent_dim": 4})
    with pytest.raises(ValueError, match=r"critic\.embed_dim must be an int"):
        Actor.from_config({"latent_dim": 4, "num_attributes": 1, "embed_dim": "8"})


@pytest.fixture
def no_allocation(monkeypatch):
    """Building any layer fails: what raises under it raised before allocating."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"allocated a layer {args} before checking the widths")

    monkeypatch.setattr(torch.nn, "Linear", refuse)
    monkeypatch.setattr(torch, "empty", refuse)


@pytest.mark.parametrize("cls", [RealismCritic, AttributeCritic, Actor])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"hidden": (HUGE,)},
        {"hidden": (8,) * (MAX_LAYERS + 1)},
        {"latent_dim": HUGE},
        {"num_attributes": HUGE},
        {"hidden": (MAX_WIDTH,) * 2},  # every width allowed, too many parameters in all
    ],
)
def test_huge_networks_raise_before_any_allocation(no_allocation, cls, kwargs):
    args = {"latent_dim": 4, "num_attributes": 2, "hidden": (8,), **kwargs}
    start = time.perf_counter()
    with pytest.raises(ValueError):
        cls(**args)
    with pytest.raises(ValueError):
        cls.from_config(args, source=SOURCE)
    assert time.perf_counter() - start < 1.0


def test_embedding_width_is_checked_before_allocation(no_allocation):
    for cls in (RealismCritic, Actor):
        with pytest.raises(ValueError, match="embed_dim"):
            cls(4, 2, (8,), embed_dim=HUGE)


def test_parameter_limit_counts_every_layer():
    # the largest network allowed is built lazily nowhere: just check the arithmetic's edge
    from lcengine.validation import check_parameter_count

    assert check_parameter_count("n", (3, 4, 1)) == (3 + 1) * 4 + (4 + 1) * 1
    with pytest.raises(ValueError, match="more than the limit"):
        check_parameter_count("n", (MAX_PARAMETERS, 1))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    x, att = toy_data(128)
    lc = LatentConstraints(
        toy_model(),
        NAMES,
        training=tiny_training(attribute_steps=2, realism_steps=2, hidden=(8,), embed_dim=2),
    )
    lc.fit(x, att, progress=False)
    lc.add_zero_shot_constraint(
        "pos",
        lambda xs: (xs[:, 0] > 0).astype("int8"),
        num_samples=64,
        steps=2,
        hidden=(8,),
        progress=False,
    )
    return lc.save(tmp_path_factory.mktemp("ckpt") / "c")


CHECKPOINT_TAMPERED = [
    (("training", "hidden"), [HUGE], "training.hidden[0]"),
    (("training", "embed_dim"), -4, "training.embed_dim"),
    (("training", "batch_size"), "128", "training.batch_size"),
    (("sampling", "lr"), -1.0, "sampling.lr"),
    (("transform", "steps"), -3, "transform.steps"),
    (("transform", "typo"), 1, "transform: unknown SamplingConfig keys ['typo']"),
    (("attributes", "groups"), {"g": "a0"}, "attributes.groups['g']"),
    (("attributes", "binary"), ["a0", "a0"], "attributes: attribute and group names repeat"),
    (("attributes", "sort"), [], "attributes: unknown AttributeSpec keys ['sort']"),
    (("attribute_names",), ["a0", "a1", "b"], "attribute_names ['a0', 'a1', 'b'] are not"),
    (("zero_shot", 0, "critic", "hidden"), [HUGE], "hidden[0]"),
]


@pytest.mark.parametrize(("path", "value", "named"), CHECKPOINT_TAMPERED)
def test_tampered_checkpoint_is_refused_naming_the_key(saved, tmp_path, path, value, named):
    """End to end through LatentConstraints.load: checkpoint.py passes the file as ``source=``
    (and ``key=`` where the object is not the default one) to the checks above."""
    cfg = json.loads((saved / "constraints.json").read_text())
    target = cfg
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    d = shutil.copytree(saved, tmp_path / "c")
    (d / "constraints.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError) as exc_info:
        LatentConstraints.load(d, toy_model())
    msg = _message(exc_info)
    assert named in msg and str(d / "constraints.json") in msg, msg
