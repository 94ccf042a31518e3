# SPDX-License-Identifier: Apache-2.0
"""Zero-shot constraints: rules, learning from decoded prior samples, use in the facade."""

import warnings

import numpy as np
import pytest
import torch

from lcengine.method import LatentConstraints, SamplingConfig
from lcengine.method.zeroshot import apply_rule, label_prior_samples, learn_zero_shot_constraint
from support.method_toys import NAMES, rule_positive_product, tiny_training, toy_data, toy_model

warnings.filterwarnings("ignore", message=".*falling back to the eager.*")
warnings.filterwarnings("ignore", message=".*no fused.*")


def test_apply_rule_validates_answers():
    x = np.zeros((3, 5), np.float32)
    assert apply_rule(lambda v: v[:, 0] > -1, x).tolist() == [True] * 3
    assert apply_rule(lambda v: np.array([0, 1, 0]), x).tolist() == [False, True, False]
    with pytest.raises(ValueError, match="one bool per item"):
        apply_rule(lambda v: np.zeros(2, bool), x)
    with pytest.raises(ValueError, match="booleans"):
        apply_rule(lambda v: np.array([0.5, 1, 0]), x)
    with pytest.raises(TypeError, match="callable"):
        apply_rule("z0 > 0", x)


def test_learn_from_prior_samples_without_labels():
    model = toy_model()
    z, labels = label_prior_samples(model, rule_positive_product, 300, seed=1, progress=False)
    assert z.shape == (300, 4) and labels.dtype == bool
    assert torch.equal(
        z, label_prior_samples(model, rule_positive_product, 300, seed=1, progress=False)[0]
    )
    c = learn_zero_shot_constraint(
        model,
        rule_positive_product,
        "prod",
        num_samples=3000,
        hidden=(32, 32),
        steps=400,
        seed=0,
        progress=False,
    )
    assert c.critic.num_attributes == 1 and 0.1 < c.positive_rate < 0.5
    assert c.heldout_accuracy > 0.85
    with pytest.raises(ValueError, match="constant"):
        learn_zero_shot_constraint(
            model,
            lambda x: np.zeros(len(x), bool),
            "never",
            num_samples=100,
            steps=5,
            progress=False,
        )
    with pytest.raises(ValueError, match="name"):
        learn_zero_shot_constraint(
            model, rule_positive_product, "bad name", num_samples=100, steps=5, progress=False
        )


def test_zero_shot_in_sampling_transform_and_checkpoints(tmp_path):
    x, att = toy_data(512)
    lc = LatentConstraints(
        toy_model(),
        NAMES,
        training=tiny_training(attribute_steps=200, realism_steps=100),
        sampling=SamplingConfig(steps=150, lr=0.1, w_dist=0.001, tau_a=0.9),
        transform=SamplingConfig(steps=150, lr=0.1, w_dist=0.001, tau_a=0.9),
    )
    lc.fit(x, att, progress=False)
    lc.add_zero_shot_constraint(
        "prod", rule_positive_product, num_samples=3000, hidden=(32, 32), steps=400, progress=False
    )
    assert lc.attribute_names == NAMES + ("prod",)
    with pytest.raises(ValueError, match="already used"):
        lc.add_zero_shot_constraint("a1", rule_positive_product, progress=False)

    stacked = lc.attribute_critic
    assert stacked is lc.attribute_critic  # built once per set of critics
    assert stacked.num_attributes == 4

    prior = lc.sample("prod", 64, method="prior", seed=2)
    res = lc.sample("prod", 64, method="optimize", seed=2)
    assert res.attributes.shape == (64, 4) and res.mask[:, 3].all()
    assert not res.mask[:, :3].any()
    rate_prior = rule_positive_product(prior.images).mean()
    rate_opt = rule_positive_product(res.images[res.converged]).mean()
    assert res.converged.mean() > 0.7 and rate_opt > max(0.8, rate_prior + 0.3)
    neg = lc.sample("!prod a0", 32, method="optimize", seed=3)
    assert rule_positive_product(neg.images[neg.converged]).mean() < 0.2

    src = x[~rule_positive_product(x)][:12]
    tr = lc.transform(src, {"prod": 1})
    assert rule_positive_product(tr.images[tr.converged]).mean() > 0.8

    # the actor and the baseline know the data's attributes only: refused, never dropped
    for method in ("actor", "baseline"):
        with pytest.raises(ValueError, match=rf"method='{method}'.*zero-shot.*\['prod'\]"):
            lc.sample("prod a0", 4, method=method)
        with pytest.raises(ValueError, match=rf"transform\(method='{method}'\).*\['prod'\]"):
            lc.transform(src, {"prod": 1}, method=method)
        assert lc.sample("a0", 4, method=method).images.shape[0] == 4  # data attributes: fine

    lc.save(tmp_path / "zs")
    back = LatentConstraints.load(tmp_path / "zs", toy_model())
    assert back.attribute_names == lc.attribute_names
    assert back.rules() == {}  # rules are code, not checkpoint data
    back.attach_rule("prod", rule_positive_product)
    assert set(back.rules()) == {"prod"}
    again = back.sample("prod", 64, method="optimize", seed=2)
    assert torch.allclose(again.latents, res.latents, atol=1e-5)
    with pytest.raises(ValueError, match="no zero-shot constraint"):
        back.attach_rule("nope", rule_positive_product)
