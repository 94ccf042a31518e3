# SPDX-License-Identifier: Apache-2.0
"""Critics, actor and their training: structure contract, gating, determinism, resume."""
import warnings

import pytest
import torch
from torch import nn

from lcengine.method.critics import (
    ACTIVATIONS,
    Actor,
    AttributeCritic,
    RealismCritic,
    StackedAttributeCritic,
    build_network,
)
from lcengine.method.training import ConstraintTrainer, TrainingConfig, TrainingData

from method_toys import tiny_training, toy_data

warnings.filterwarnings("ignore", message=".*falling back to the eager.*")


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny networks: one thread is faster, and immune to oversubscribed CI machines
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_structure_contract_and_shapes(activation):
    d, a = 5, 3
    nets = [RealismCritic(d, a, hidden=(16, 8), embed_dim=4, activation=activation),
            AttributeCritic(d, a, hidden=(16,), activation=activation),
            Actor(d, a, hidden=(16, 8), embed_dim=4, activation=activation)]
    z, y = torch.randn(7, d), (torch.rand(7, a) > 0.5).float()
    for net in nets:
        # the fused optimizer reads these: ModuleList of nn.Linear + activation string
        assert isinstance(net.layers, nn.ModuleList)
        assert all(type(layer) is nn.Linear for layer in net.layers)
        assert net.activation == activation
    real, attr, actor = nets
    assert isinstance(real.y_embedding, nn.Linear) and real.layers[0].in_features == d + 4
    assert real(z, y).shape == (7,)
    assert attr(z).shape == (7, a)
    assert actor(z, y).shape == (7, d)
    assert actor.layers[-1].out_features == 2 * d


def test_actor_gate_interpolates():
    actor = Actor(3, 2, hidden=(8,), embed_dim=2)
    last = actor.layers[-1]
    z, y = torch.randn(4, 3), torch.ones(4, 2)
    with torch.no_grad():
        last.weight.zero_()
        last.bias[:3] = 2.0  # dz
        last.bias[3:] = -50.0  # gates closed: z' = z
    assert torch.allclose(actor(z, y), z, atol=1e-6)
    with torch.no_grad():
        last.bias[3:] = 50.0  # gates open: z' = dz
    assert torch.allclose(actor(z, y), torch.full_like(z, 2.0), atol=1e-6)
    out, gates = actor.forward_with_gates(z, y)
    assert gates.shape == z.shape and bool((gates > 0.99).all())


def test_stacked_attribute_critic_concatenates():
    a, b = AttributeCritic(4, 3, hidden=(8,)), AttributeCritic(4, 1, hidden=(8,))
    s = StackedAttributeCritic([a, b])
    z = torch.randn(5, 4)
    assert s.num_attributes == 4
    assert torch.equal(s(z), torch.cat([a(z), b(z)], 1))
    with pytest.raises(ValueError, match="latent_dim"):
        StackedAttributeCritic([a, AttributeCritic(3, 1, hidden=(8,))])


def test_build_network_roundtrip():
    for net in (RealismCritic(4, 3, hidden=(8,), embed_dim=2),
                AttributeCritic(4, 3, hidden=(8, 8)), Actor(4, 3, hidden=(8,), embed_dim=2)):
        twin = build_network(type(net).__name__, net.config())
        assert twin.config() == net.config()
        twin.load_state_dict(net.state_dict())


@pytest.mark.parametrize("kwargs, match", [
    (dict(latent_dim=0, num_attributes=3), "latent_dim"),
    (dict(latent_dim=4, num_attributes=0), "num_attributes"),
    (dict(latent_dim=4, num_attributes=3, hidden=()), "hidden"),
    (dict(latent_dim=4, num_attributes=3, hidden=(8, -1)), "hidden"),
    (dict(latent_dim=4, num_attributes=3, activation="tanh"), "activation"),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AttributeCritic(**kwargs)


def test_bad_forward_inputs():
    real = RealismCritic(4, 3, hidden=(8,), embed_dim=2)
    with pytest.raises(ValueError, match=r"z must have shape \[B, 4\]"):
        real(torch.randn(2, 5), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"y must have shape \[B, 3\]"):
        real(torch.randn(2, 4), torch.ones(2, 2))
    with pytest.raises(TypeError, match="z must be a torch.Tensor"):
        AttributeCritic(4, 3, hidden=(8,))([[0.0] * 4])


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
        t = ConstraintTrainer(4, 3, torch.full((4,), 0.1), tiny_training(
            attribute_steps=150, realism_steps=20))
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
