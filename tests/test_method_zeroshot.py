# SPDX-License-Identifier: Apache-2.0
"""Zero-shot constraints: rules, learning from decoded prior samples, use in the pipeline."""
import warnings

import numpy as np
import pytest
import torch

from lcengine.method import LatentConstraints, SamplingConfig
from lcengine.method.zeroshot import (
    DIGIT_RULES,
    apply_rule,
    has_loop,
    label_prior_samples,
    learn_zero_shot_constraint,
    left_heavy,
    top_heavy,
)

from method_toys import NAMES, tiny_training, toy_data, toy_model

warnings.filterwarnings("ignore", message=".*falling back to the eager.*")
warnings.filterwarnings("ignore", message=".*no fused.*")


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_digit_rules_on_drawn_images():
    img = np.zeros((4, 28, 28), np.float32)
    img[0, 4:10, 10:18] = 1.0  # ink at the top
    img[1, 20:26, 10:18] = 1.0  # ink at the bottom
    img[2, 8:20, 8:20] = 1.0  # a ring: closed loop
    img[2, 11:17, 11:17] = 0.0
    img[3, 5:23, 13:15] = 1.0  # a bar: no loop, centered
    assert top_heavy(img).tolist() == [True, False, False, False]
    assert has_loop(img).tolist() == [False, False, True, False]
    img2 = np.zeros((2, 28, 28), np.float32)
    img2[0, 10:18, 2:8] = 1.0
    img2[1, 10:18, 20:26] = 1.0
    assert left_heavy(img2).tolist() == [True, False]
    assert set(DIGIT_RULES) == {"top_heavy", "left_heavy", "has_loop"}
    with pytest.raises(ValueError, match=r"\[N, 28, 28\]"):
        top_heavy(np.zeros((2, 5)))


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


def rule_positive_product(x: np.ndarray) -> np.ndarray:
    """Black box on decoded toy outputs: the product feature (not a latent coordinate)."""
    return x[:, 4] > 0.3


def test_learn_from_prior_samples_without_labels():
    model = toy_model()
    z, labels = label_prior_samples(model, rule_positive_product, 300, seed=1, progress=False)
    assert z.shape == (300, 4) and labels.dtype == bool
    assert torch.equal(z, label_prior_samples(model, rule_positive_product, 300, seed=1,
                                              progress=False)[0])
    c = learn_zero_shot_constraint(model, rule_positive_product, "prod", num_samples=3000,
                                   hidden=(32, 32), steps=400, seed=0, progress=False)
    assert c.critic.num_attributes == 1 and 0.1 < c.positive_rate < 0.5
    assert c.heldout_accuracy > 0.85
    with pytest.raises(ValueError, match="constant"):
        learn_zero_shot_constraint(model, lambda x: np.zeros(len(x), bool), "never",
                                   num_samples=100, steps=5, progress=False)
    with pytest.raises(ValueError, match="name"):
        learn_zero_shot_constraint(model, rule_positive_product, "bad name", num_samples=100,
                                   steps=5, progress=False)


def test_zero_shot_in_sampling_transform_and_checkpoints(tmp_path):
    x, att = toy_data(512)
    lc = LatentConstraints(toy_model(), NAMES, training=tiny_training(
        attribute_steps=200, realism_steps=100),
        sampling=SamplingConfig(steps=150, lr=0.1, w_dist=0.001, tau_a=0.9),
        transform=SamplingConfig(steps=150, lr=0.1, w_dist=0.001, tau_a=0.9))
    lc.fit(x, att, progress=False)
    lc.add_zero_shot_constraint("prod", rule_positive_product, num_samples=3000,
                                hidden=(32, 32), steps=400, progress=False)
    assert lc.attribute_names == NAMES + ("prod",)
    with pytest.raises(ValueError, match="already used"):
        lc.add_zero_shot_constraint("a1", rule_positive_product, progress=False)

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
