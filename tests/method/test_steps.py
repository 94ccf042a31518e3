# SPDX-License-Identifier: Apache-2.0
"""The hand-derived training steps (lcengine.method.steps) against their autograd twins
(lcengine.reference.training) in float64: every weight gradient to 1e-10 relative."""

import pytest
import torch

from lcengine.method.critics import Actor, AttributeCritic, RealismCritic
from lcengine.method.steps import (
    actor_step_grads,
    apply_grads,
    attribute_step_grads,
    realism_step_grads,
    supports_hand_derived,
)
from lcengine.reference import (
    CriticMLP,
    actor_step_grads_ref,
    attribute_step_grads_ref,
    realism_loss_ref,
    realism_step_grads_ref,
)

RTOL = 1e-10


def _close(got, want, rtol=RTOL):
    """Every tensor within ``rtol`` of the largest entry of its reference (relative error)."""
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, (i, g.shape, w.shape)
        scale = w.abs().max().clamp_min(1e-300)
        err = float((g - w).abs().max() / scale)
        assert err < rtol, f"parameter {i}: relative error {err:.3e}"


def _realism_batch(b, d, a, gen):
    def r(*s):
        return torch.randn(*s, generator=gen, dtype=torch.float64)

    y_real = (torch.rand(b, a, generator=gen) > 0.5).double()
    y_mis = (torch.rand(b, a, generator=gen) > 0.5).double()
    differs = (y_mis != y_real).any(dim=1).double()
    alpha = torch.rand(b, 1, generator=gen, dtype=torch.float64)
    return (r(b, d), r(b, d), r(b, d), y_real, y_mis, differs, alpha)


def _scaled(net, gen, scale=0.7):
    """Larger weights than the default init, so the penalty's |grad| is away from 1 and every
    term matters."""
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale / p.shape[-1] ** 0.5)
    return net


@pytest.mark.parametrize(
    "activation,hidden,embed",
    [("relu", (32, 24, 16), 6), ("leaky_relu", (20, 20), 4), ("relu", (7,), 3)],
)
def test_realism_step_matches_double_backward(activation, hidden, embed):
    gen = torch.Generator().manual_seed(len(hidden) * 7 + embed)
    b, d, a = 9, 5, 4
    critic = _scaled(RealismCritic(d, a, hidden, embed, activation).double(), gen)
    batch = _realism_batch(b, d, a, gen)
    want, want_loss, parts = realism_step_grads_ref(critic, *batch, gp_weight=10.0)
    got = realism_step_grads(critic, *batch, gp_weight=10.0)
    _close(got.grads, want)
    assert float(got.loss) == pytest.approx(float(want_loss), rel=RTOL)
    assert float(got.parts["gp"]) == pytest.approx(float(parts["gp"]), rel=RTOL)
    assert float(got.parts["bce"]) == pytest.approx(float(parts["bce"]), rel=RTOL)
    torch.testing.assert_close(got.logits, parts["logits"], rtol=RTOL, atol=0)
    # the penalty's own gradient is exercised, not drowned by the constraint loss
    gp_only = realism_step_grads(critic, *batch, gp_weight=1.0)
    bce_only = realism_step_grads(critic, *batch, gp_weight=0.0)
    assert any(
        float((g1 - g0).abs().max()) > 1e-3 * float(g0.abs().max())
        for g1, g0 in zip(gp_only.grads, bce_only.grads, strict=True)
    )


def test_realism_step_on_an_unconditional_contract_critic():
    gen = torch.Generator().manual_seed(3)
    b, d = 6, 4
    critic = _scaled(CriticMLP(d, (16, 16), 1, "relu").double(), gen)

    class Unconditional(torch.nn.Module):  # D(z, y) that ignores y, the shape the step expects
        def __init__(self, net):
            super().__init__()
            self.layers, self.activation, self.net = net.layers, net.activation, net

        def forward(self, z, y):
            return self.net(z).squeeze(1)

    wrapped = Unconditional(critic)
    batch = _realism_batch(b, d, 3, gen)
    want, _, _ = realism_step_grads_ref(wrapped, *batch, gp_weight=5.0)
    got = realism_step_grads(critic, *batch, gp_weight=5.0)
    _close(got.grads, want)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_attribute_step_matches_autograd(activation):
    gen = torch.Generator().manual_seed(11)
    critic = _scaled(AttributeCritic(5, 4, (24, 12), activation).double(), gen)
    z = torch.randn(10, 5, generator=gen, dtype=torch.float64)
    y = (torch.rand(10, 4, generator=gen) > 0.5).double()
    want, want_loss, _ = attribute_step_grads_ref(critic, z, y)
    got = attribute_step_grads(critic, z, y)
    _close(got.grads, want)
    assert float(got.loss) == pytest.approx(float(want_loss), rel=RTOL)


@pytest.mark.parametrize("attribute_weight,sigma_bar", [(1.0, "vector"), (0.0, 0.8)])
def test_actor_step_matches_autograd(attribute_weight, sigma_bar):
    gen = torch.Generator().manual_seed(5)
    d, a, n = 5, 3, 12
    actor = _scaled(Actor(d, a, (16, 16), 4).double(), gen, 1.5)
    realism = _scaled(RealismCritic(d, a, (20, 8), 6).double(), gen)
    attribute = _scaled(AttributeCritic(d, a, (12,), "leaky_relu").double(), gen)
    z = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = (torch.rand(n, a, generator=gen) > 0.5).double()
    sb = torch.rand(d, generator=gen, dtype=torch.float64) + 0.5 if sigma_bar == "vector" else 0.8
    kw = dict(attribute_weight=attribute_weight, lambda_dist=0.3)
    want, want_loss, parts = actor_step_grads_ref(actor, realism, attribute, z, y, sb, **kw)
    got = actor_step_grads(actor, realism, attribute, z, y, sb, **kw)
    _close(got.grads, want)
    assert float(got.loss) == pytest.approx(float(want_loss), rel=RTOL)
    for k in ("realism", "attribute", "distance"):
        assert float(got.parts[k]) == pytest.approx(float(parts[k]), rel=RTOL, abs=1e-300)
    torch.testing.assert_close(got.logits, parts["z_out"], rtol=RTOL, atol=0)


def test_smooth_activations_are_refused_with_a_reason():
    critic = RealismCritic(4, 2, (8,), 4, "softplus")
    assert not supports_hand_derived(critic)
    assert supports_hand_derived(RealismCritic(4, 2, (8,), 4))
    z = torch.randn(3, 4)
    y = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="piecewise-linear.*softplus.*autograd"):
        realism_step_grads(critic, z, z, z, y, y, torch.ones(3), torch.rand(3, 1), gp_weight=10)
    with pytest.raises(ValueError, match="softplus"):
        attribute_step_grads(AttributeCritic(4, 2, (8,), "softplus"), z, y)
    with pytest.raises(TypeError, match="MLP"):
        attribute_step_grads(torch.nn.Linear(4, 2), z, y)


def test_apply_grads_then_adam_equals_the_autograd_update():
    """One full step, float32: hand-derived grads + Adam give the autograd step's weights."""
    torch.manual_seed(0)
    b, d, a = 16, 6, 3
    nets = [RealismCritic(d, a, (32, 32), 8) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [torch.optim.Adam(n.parameters(), lr=1e-2, betas=(0.0, 0.9)) for n in nets]
    gen = torch.Generator().manual_seed(1)
    batch = tuple(t.float() for t in _realism_batch(b, d, a, gen))
    nets[0].zero_grad()
    loss, _ = realism_loss_ref(nets[0], *batch, gp_weight=10.0)
    loss.backward()
    apply_grads(nets[1], realism_step_grads(nets[1], *batch, gp_weight=10.0).grads)
    for o in opts:
        o.step()
    for p0, p1 in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(p1, p0, rtol=1e-5, atol=1e-6)


def test_compiled_realism_step_matches_eager():
    """The compiled kernel (no double backward: torch.compile takes it) gives the eager one's
    gradients."""
    torch.manual_seed(0)
    b, d, a = 8, 4, 3
    critic = RealismCritic(d, a, (16, 16), 4)
    gen = torch.Generator().manual_seed(2)
    batch = tuple(t.float() for t in _realism_batch(b, d, a, gen))
    eager = realism_step_grads(critic, *batch, gp_weight=10.0)
    compiled = realism_step_grads(critic, *batch, gp_weight=10.0, compiled=True)
    _close(compiled.grads, eager.grads, rtol=1e-4)
