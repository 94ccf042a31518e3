# SPDX-License-Identifier: Apache-2.0
"""Training of the critics and the actor: configuration, determinism, learning, resume."""

import pytest
import torch

from lcengine.method.config import SamplingConfig
from lcengine.method.training import ConstraintTrainer, TrainingConfig, TrainingData
from support.method_toys import tiny_training, toy_data


def test_training_config_validation_and_dict_roundtrip():
    cfg = TrainingConfig(hidden=[8, 8], betas=[0, 0.9])
    assert cfg.hidden == (8, 8) and cfg.betas == (0.0, 0.9)
    assert TrainingConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="batch_size"):
        TrainingConfig(batch_size=0)
    with pytest.raises(ValueError, match="prior_fake_prob"):
        TrainingConfig(prior_fake_prob=1.5)
    with pytest.raises(ValueError, match="unknown TrainingConfig keys"):
        TrainingConfig.from_dict({"hiden": [8]})


def _toy_training_data():
    x, att = toy_data(256)
    mu = torch.from_numpy(x[:, :4])
    return TrainingData(mu, torch.full_like(mu, -4.0), torch.from_numpy(att).float())


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.state_tensors().items()}


def test_training_is_deterministic_and_learns():
    data = _toy_training_data()
    cfg = tiny_training(attribute_steps=150, realism_steps=20)
    runs = []
    for _ in range(2):
        t = ConstraintTrainer(
            4, 3, torch.full((4,), 0.1), tiny_training(attribute_steps=150, realism_steps=20)
        )
        t.train_attribute(data, cfg.attribute_steps, progress=False)
        t.train_realism_actor(data, cfg.realism_steps, progress=False)
        runs.append(t)
    w0, w1 = _weights(runs[0]), _weights(runs[1])
    assert w0.keys() == w1.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    t = runs[0]
    assert (t.attribute_step, t.realism_step, t.actor_step) == (150, 20, 2)
    assert t.history["attribute"]["accuracy"][-1] > 0.9  # attributes are sign tests of z
    for group in ("attribute", "realism", "actor"):
        assert t.history[group]["step"], group


def test_resume_matches_uninterrupted_training():
    data = _toy_training_data()
    sb = torch.full((4,), 0.1)
    straight = ConstraintTrainer(4, 3, sb, tiny_training())
    straight.train_attribute(data, 20, progress=False)
    straight.train_realism_actor(data, 30, progress=False)

    first = ConstraintTrainer(4, 3, sb, tiny_training())
    first.train_attribute(data, 20, progress=False)
    first.train_realism_actor(data, 12, progress=False)
    tensors, state = first.state_tensors(), first.state_json()
    resumed = ConstraintTrainer(4, 3, sb, tiny_training())
    resumed.load_state_tensors(tensors, "test")
    resumed.load_state_json(state, "test")
    resumed.train_attribute(data, 20, progress=False)  # already there: no-op
    resumed.train_realism_actor(data, 30, progress=False)
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert resumed.realism_step == 30 and resumed.actor_step == straight.actor_step


def test_load_state_rejects_mismatched_tensors():
    t = ConstraintTrainer(4, 3, torch.full((4,), 0.1), tiny_training())
    tensors = t.state_tensors()
    other = ConstraintTrainer(4, 3, torch.full((4,), 0.1), tiny_training(hidden=(16, 16)))
    with pytest.raises(ValueError, match="shape"):
        other.load_state_tensors(tensors, "ckpt.safetensors")
    del tensors["net.actor.layers.0.weight"]
    with pytest.raises(ValueError, match="missing tensors"):
        t.load_state_tensors(tensors, "ckpt.safetensors")


def test_training_data_validation():
    mu = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="NaN"):
        TrainingData(torch.full((4, 2), float("nan")), mu, torch.zeros(4, 1))
    with pytest.raises(ValueError, match="only 0 and 1"):
        TrainingData(mu, mu, torch.full((4, 1), 2.0))
    with pytest.raises(ValueError, match="rows"):
        TrainingData(mu, mu, torch.zeros(3, 1))
    t = ConstraintTrainer(2, 2, torch.ones(2), tiny_training())
    with pytest.raises(ValueError, match="attributes"):
        t.train_attribute(TrainingData(mu, mu, torch.zeros(4, 1)), 1, progress=False)


def test_sampling_config_validation_and_dict_roundtrip():
    cfg = SamplingConfig(steps=10, lr=1, w_dist=0)
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.w_dist == 0.0
    assert SamplingConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="tau_r"):
        SamplingConfig(tau_r=1.0)
    with pytest.raises(ValueError, match="tau_a"):
        SamplingConfig(tau_a=0.3)
    with pytest.raises(ValueError, match="lr"):
        SamplingConfig(lr=0.0)
    with pytest.raises(ValueError, match="w_attr"):
        SamplingConfig(w_attr=float("nan"))
    with pytest.raises(ValueError, match="steps"):
        SamplingConfig(steps=-1)
    with pytest.raises(ValueError, match="unknown SamplingConfig keys"):
        SamplingConfig.from_dict({"step": 3})


def test_trainer_takes_hand_derived_steps_equal_to_autograd():
    """ReLU critics and actor train through lcengine.method.steps; the same updates through
    autograd (double backward for the penalty) give the same weights up to float32 rounding."""
    data = _toy_training_data()
    cfg = tiny_training(attribute_steps=5, realism_steps=20)
    runs = []
    for hand in (True, False):
        t = ConstraintTrainer(4, 3, torch.full((4,), 0.1), cfg)
        assert t.hand_derived  # relu everywhere
        t.hand_derived = hand
        t.train_attribute(data, cfg.attribute_steps, progress=False)
        t.train_realism_actor(data, cfg.realism_steps, progress=False)
        runs.append(_weights(t))
    hand_w, auto_w = runs
    for k in hand_w:
        torch.testing.assert_close(hand_w[k], auto_w[k], rtol=1e-4, atol=1e-5, msg=k)
    # and the two paths are not trivially the same code: the moments moved from their start
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in hand_w.items() if "opt" in k)


def test_trainer_keeps_autograd_for_smooth_activations():
    t = ConstraintTrainer(4, 3, torch.full((4,), 0.1), tiny_training(activation="softplus"))
    assert not t.hand_derived
