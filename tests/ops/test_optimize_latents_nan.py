# SPDX-License-Identifier: Apache-2.0
"""A critic that produces NaN never "accepts" a row on a fused path: NaN passes through the fused
activations as it does through torch's, so every backend agrees with the eager loop.

Under the Triton interpreter, ``tl.maximum`` follows numpy (NaN propagates either way), so the
Triton cases discriminate on a GPU only; the native CPU ReLU case fails without the fix.
"""

import pytest
import torch

import lcengine
from lcengine.reference import CriticMLP
from support.params import backend_device_params


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "softplus"])
@pytest.mark.parametrize("backend,device", backend_device_params())
def test_a_critic_with_a_nan_unit_accepts_no_row(backend, device, activation):
    torch.manual_seed(5)
    real = CriticMLP(6, (16, 16), 1, activation, num_attributes=3, embed_dim=4)
    attr = CriticMLP(6, (16, 16), 3, activation)
    with torch.no_grad():
        # very low thresholds: every row would be accepted at once by the finite units alone
        real.layers[1].bias[0] = float("nan")  # one hidden unit of the realism critic diverged
        real.layers[2].weight[:, 0] = 1.0  # ... and the output reads it
    real, attr = real.requires_grad_(False).to(device), attr.requires_grad_(False).to(device)
    z = torch.randn(9, 6, device=device)
    y = (torch.rand(9, 3, device=device) > 0.5).float()
    mask = torch.ones(9, 3, dtype=torch.bool, device=device)
    kw = dict(steps=3, tau_r=1e-6, tau_a=0.5 + 1e-6, lr=0.05)
    ref = lcengine.optimize_latents(z, y, mask, real, attr, 1.0, backend="eager", **kw)
    out = lcengine.optimize_latents(z, y, mask, real, attr, 1.0, backend=backend, **kw)
    assert not ref.converged.any() and not out.converged.any()
    assert torch.isnan(ref.realism_prob).all() and torch.isnan(out.realism_prob.cpu()).all()
