# SPDX-License-Identifier: Apache-2.0
"""The Triton optimizer's stopping rule decides like the eager reference at the threshold.

Critics with zero weights give constant logits (their last biases) and no gradient, so the
latents never move and each row's decision is the stopping rule on one known logit. Thresholds
set exactly at ``torch.sigmoid(l)`` (not satisfied: the comparisons are strict) and one float32
ulp on the satisfied side are the borderline cases: a sigmoid computed another way (``e / (1 +
e)`` for negative logits, an approximate division) flips some of them. The interpreter's exp is
numpy's, so only logits where numpy's and torch's exp agree are used; that the compiled kernels
divide exactly is checked on the PTX by tests/native/triton_aot.py.
"""

import numpy as np
import pytest
import torch

import lcengine
from lcengine.reference import CriticMLP
from support.params import backend_device_params

pytestmark = pytest.mark.triton

TRITON = backend_device_params(("triton",))
B, D, A = 3, 4, 2
CANDIDATES = [-5.3, -2.71, -1.37, -0.61, -0.213, 0.117, 0.59, 1.41, 2.83, 4.9]


def _sigmoid(logit: float) -> float:
    return torch.sigmoid(torch.full((B,), logit, dtype=torch.float32))[0].item()


def _agrees(logit: float) -> bool:
    """numpy's float32 1 / (1 + exp(-logit)) (the interpreter) is torch.sigmoid(logit) here."""
    x = np.float32(logit)
    p = np.float32(1.0) / (np.float32(1.0) + np.exp(-x))
    return float(p) == _sigmoid(float(x))


LOGITS = [float(np.float32(c)) for c in CANDIDATES if _agrees(c)]


def _constant_critic(out: int, bias, embed: int = 0) -> CriticMLP:
    net = CriticMLP(D, (8,), out, "relu", num_attributes=A, embed_dim=embed)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.layers[-1].bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return net


def _decide(backend, device, *, realism, attribute, y, mask, tau_r, tau_a):
    z = torch.randn(B, D)
    real = _constant_critic(1, [realism], embed=3)
    attr = _constant_critic(A, attribute)
    y = torch.tensor([y] * B, dtype=torch.float32)
    mask = torch.tensor([mask] * B)
    out = lcengine.optimize_latents(
        z.to(device),
        y.to(device),
        mask.to(device),
        real.to(device),
        attr.to(device),
        1.0,
        steps=2,
        tau_r=tau_r,
        tau_a=tau_a,
        backend=backend,
    )
    assert torch.equal(out.latents.cpu(), z) or not out.converged.any()
    return out.converged.cpu(), out.steps.cpu()


def test_enough_borderline_logits():
    negative = sum(x < 0 for x in LOGITS)
    assert negative >= 2 and len(LOGITS) - negative >= 2, LOGITS


@pytest.mark.parametrize("backend_name,device", TRITON)
def test_realism_threshold_at_sigmoid(backend_name, device):
    """Requirement +1 (the realism column): satisfied iff sigmoid(logit) > tau_r."""
    for logit in LOGITS:
        s = _sigmoid(logit)
        below = float(np.nextafter(np.float32(s), np.float32(0)))
        for tau, satisfied in ((s, False), (below, True)):
            kw = dict(realism=logit, attribute=[0.0, 0.0], y=[1, 1], mask=[False, False], tau_r=tau)
            ref = _decide("eager", "cpu", tau_a=0.5, **kw)
            got = _decide("triton", device, tau_a=0.5, **kw)
            assert bool(ref[0].all()) == satisfied, (logit, tau)
            assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1]), (logit, tau)


@pytest.mark.parametrize("backend_name,device", TRITON)
def test_attribute_thresholds_at_sigmoid(backend_name, device):
    """Requirement +1 (y = 1): sigmoid(logit) > tau_a; requirement -1 (y = 0): sigmoid(logit) <
    1 - tau_a. The realism logit is far above its threshold."""
    for logit in LOGITS:
        s = np.float32(_sigmoid(logit))
        up, down = np.nextafter(s, np.float32(1)), np.nextafter(s, np.float32(0))
        if logit > 0:  # tau_a >= 0.5: y = 1 needs p > tau_a, here p > s is false
            cases = [([1, 0], float(s), False), ([1, 0], float(down), True)]
        else:  # y = 0 needs p < 1 - tau_a = s (exactly, in float32), false
            cases = [([0, 0], 1.0 - float(s), False), ([0, 0], 1.0 - float(up), True)]
        for y, tau_a, satisfied in cases:
            kw = dict(realism=20.0, attribute=[logit, 0.0], y=y, mask=[True, False], tau_r=0.5)
            if y[0] == 0:  # prepare's lower threshold is exactly s or the next float up
                assert float(np.float32(1.0 - tau_a)) == float(s if not satisfied else up)
            ref = _decide("eager", "cpu", tau_a=tau_a, **kw)
            got = _decide("triton", device, tau_a=tau_a, **kw)
            assert bool(ref[0].all()) == satisfied, (logit, y, tau_a)
            assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1]), (logit, y, tau_a)
