# SPDX-License-Identifier: Apache-2.0
"""The digits application's config (run.json's ``config``) is checked key by key: a tampered
value raises ValueError naming the file and the key, before any network is built."""

import copy
import json
import math

import pytest
import torch

from lcengine.apps.digits.config import DemoConfig, config_from_dict, demo_config
from lcengine.validation import MAX_LAYERS

SOURCE = "runs/r1/run.json"
HUGE = 10**9


def _tampered(path: str, value):
    d = json.loads(json.dumps(demo_config(fast=True).to_dict()))
    target = d
    *parents, last = path.split(".")
    for part in parents:
        target = target[part]
    target[last] = value
    return d


TAMPERED = [
    ("name", 3, "config.name"),
    ("seed", -1, "config.seed"),
    ("seed", "0", "config.seed"),
    ("heldout_fraction", 1.0, "config.heldout_fraction"),
    ("heldout_fraction", 0, "config.heldout_fraction"),
    ("vae", [], "config.vae must be a JSON object"),
    ("vae.hidden", [HUGE], "config.vae.hidden[0]"),
    ("vae.hidden", "128", "config.vae.hidden"),
    ("vae.hidden", [8] * (MAX_LAYERS + 1), "config.vae.hidden"),
    ("vae.latent_dim", HUGE, "config.vae.latent_dim"),
    ("vae.latent_dim", 0, "config.vae.latent_dim"),
    ("vae.epochs", -1, "config.vae.epochs"),
    ("vae.lr", math.inf, "config.vae.lr"),
    ("vae.batch_size", HUGE, "config.vae.batch_size"),
    ("vae.decoder_scale", -0.1, "config.vae.decoder_scale"),
    ("vae.seed", 1, "config.vae: unknown vae keys ['seed']"),
    ("vae.hidden", [65536, 65536, 65536], "config.vae: layers"),
    ("classifier.channels", [4], "config.classifier.channels"),
    ("classifier.channels", [4, HUGE], "config.classifier.channels[1]"),
    ("classifier.channels", "48", "config.classifier.channels"),
    ("classifier.feature_dim", HUGE, "config.classifier.feature_dim"),
    ("classifier.feature_dim", 32.0, "config.classifier.feature_dim"),
    ("classifier.channels", [65536, 65536], "config.classifier: layers"),
    ("classifier.dropout", 0.5, "config.classifier: unknown classifier keys ['dropout']"),
    ("training.hidden", [HUGE], "config.training.hidden[0]"),
    ("training.embed_dim", -2, "config.training.embed_dim"),
    ("training.realism_lr", 0.0, "config.training.realism_lr"),
    ("training.bogus", 1, "config.training: unknown TrainingConfig keys ['bogus']"),
    ("sampling.steps", -1, "config.sampling.steps"),
    ("transform.tau_a", 2.0, "config.transform.tau_a"),
    ("transform", "fast", "config.transform must be a JSON object"),
    ("eval_rows", 0, "config.eval_rows"),
    ("eval_rows", HUGE, "config.eval_rows"),
    ("requests", "7 thick", "config.requests"),
    ("requests", ["7 thick", 3], "config.requests[1]"),
    ("request_samples", -8, "config.request_samples"),
    ("transform_changes", {"thick": 1}, "config.transform_changes"),
    ("transform_rows", 0, "config.transform_rows"),
    ("zero_shot_rule", ["top_heavy"], "config.zero_shot_rule"),
    ("zero_shot_samples", HUGE, "config.zero_shot_samples"),
    ("zero_shot_steps", -1, "config.zero_shot_steps"),
    ("gan", [], "config.gan must be a JSON object"),
    ("gan.channels", 0, "config.gan.channels"),
    ("gan.latent_dim", HUGE, "config.gan.latent_dim"),
    ("gan.epochs", -1, "config.gan.epochs"),
    ("gan.channels", 65536, "config.gan: layers"),
    ("gan.colour", 1, "config.gan: unknown gan keys ['colour']"),
    ("gan_training.hidden", [HUGE], "config.gan_training.hidden[0]"),
    ("gan_training.autocast", "fp16", "config.gan_training.autocast"),
    ("gan_label_samples", 0, "config.gan_label_samples"),
    ("conditional", [], "config.conditional must be a JSON object"),
    ("conditional.cvae.epochs", 0, "config.conditional.cvae.epochs"),
    ("conditional.cvae.hidden", [HUGE], "config.conditional.cvae.hidden[0]"),
    ("conditional.cgan.colour", 1, "config.conditional.cgan: unknown keys ['colour']"),
    ("conditional.flow", {}, "config.conditional: unknown conditional models ['flow']"),
    ("conditional.latent_gmm.use_means", 1, "config.conditional.latent_gmm.use_means"),
    ("typo", 1, "config: unknown keys ['typo']"),
]


@pytest.fixture
def no_allocation(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("allocated a layer while reading a config")

    monkeypatch.setattr(torch.nn, "Linear", refuse)
    monkeypatch.setattr(torch.nn, "Conv2d", refuse)


@pytest.mark.parametrize(("path", "value", "named"), TAMPERED)
def test_tampered_run_config_names_the_file_and_the_key(no_allocation, path, value, named):
    with pytest.raises(ValueError) as exc_info:
        config_from_dict(_tampered(path, value), source=SOURCE)
    msg = str(exc_info.value)
    assert msg.startswith(f"{SOURCE}: {named}"), msg


@pytest.mark.parametrize("key", ["training", "sampling", "transform"])
def test_a_missing_method_config_is_named(key):
    d = demo_config(fast=True).to_dict()
    del d[key]
    with pytest.raises(ValueError, match=rf"^{SOURCE}: config: missing keys \['{key}'\]"):
        config_from_dict(d, source=SOURCE)


@pytest.mark.parametrize("value", [None, [], "config"])
def test_a_config_that_is_not_an_object_is_refused(value):
    with pytest.raises(ValueError, match=f"^{SOURCE}: config must be a JSON object"):
        config_from_dict(value, source=SOURCE)


@pytest.mark.parametrize("fast", [True, False])
def test_presets_round_trip_through_json(fast):
    cfg = demo_config(fast=fast, seed=3)
    back = config_from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.to_dict() == cfg.to_dict()


def test_keys_left_out_take_their_defaults_and_the_constructor_checks():
    d = copy.deepcopy(demo_config(fast=True).to_dict())
    for key in ("eval_rows", "requests", "zero_shot_rule"):
        del d[key]
    back = config_from_dict(d)
    default = DemoConfig()
    assert (back.eval_rows, back.requests, back.zero_shot_rule) == (
        default.eval_rows,
        default.requests,
        default.zero_shot_rule,
    )
    with pytest.raises(ValueError, match=r"DemoConfig\.eval_rows"):
        DemoConfig(eval_rows=0)
    with pytest.raises(TypeError, match=r"DemoConfig\.requests"):
        DemoConfig(requests="7 thick")


def test_a_config_without_gan_keys_has_no_decoder_only_stage():
    d = demo_config(fast=True).to_dict()
    for key in ("gan", "gan_training", "gan_label_samples", "conditional"):
        del d[key]
    cfg = config_from_dict(d, source=SOURCE)
    assert cfg.gan == {} and not cfg.gan and cfg.conditional == {}
    assert demo_config().gan and demo_config(fast=True).gan  # both presets have the stage
