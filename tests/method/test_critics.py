# SPDX-License-Identifier: Apache-2.0
"""Critics and actor: the structure contract of the fused optimizer, gating, validation."""

import pytest
import torch
from torch import nn

from lcengine.method.critics import (
    ACTIVATIONS,
    Actor,
    AttributeCritic,
    RealismCritic,
    StackedAttributeCritic,
)
from lcengine.reference import activation_ref


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_structure_contract_and_shapes(activation):
    d, a = 5, 3
    nets = [
        RealismCritic(d, a, hidden=(16, 8), embed_dim=4, activation=activation),
        AttributeCritic(d, a, hidden=(16,), activation=activation),
        Actor(d, a, hidden=(16, 8), embed_dim=4, activation=activation),
    ]
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


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_nonlinearity_is_the_reference_one(activation):
    """One activation table: the critics apply lcengine.reference.activation_ref."""
    critic = AttributeCritic(3, 2, hidden=(4,), activation=activation)
    z = torch.randn(6, 3)
    first, last = critic.layers
    expected = last(activation_ref(activation)(first(z)))
    torch.testing.assert_close(critic(z), expected, rtol=0, atol=0)


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


def test_config_rebuilds_the_network():
    for net in (
        RealismCritic(4, 3, hidden=(8,), embed_dim=2),
        AttributeCritic(4, 3, hidden=(8, 8)),
        Actor(4, 3, hidden=(8,), embed_dim=2),
    ):
        twin = type(net)(**net.config())
        assert twin.config() == net.config()
        twin.load_state_dict(net.state_dict())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(latent_dim=0, num_attributes=3), "latent_dim"),
        (dict(latent_dim=4, num_attributes=0), "num_attributes"),
        (dict(latent_dim=4, num_attributes=3, hidden=()), "hidden"),
        (dict(latent_dim=4, num_attributes=3, hidden=(8, -1)), "hidden"),
        (dict(latent_dim=4, num_attributes=3, activation="tanh"), "activation"),
    ],
)
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
