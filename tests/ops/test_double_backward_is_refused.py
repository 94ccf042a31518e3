# SPDX-License-Identifier: Apache-2.0
"""A second derivative through a fused op would be silently wrong (the kernels' gradients are
plain tensors): ``create_graph=True`` raises instead, and the eager backend still serves it."""

import pytest
import torch

import lcengine
from support.params import backend_device_params


def _losses(backend, x, y):
    return {
        "gaussian_kl": lambda: lcengine.gaussian_kl(x, y, backend=backend),
        "distance_penalty": lambda: lcengine.distance_penalty(x, y, 1.0, backend=backend),
        "constraint_loss": lambda: lcengine.constraint_loss(x, torch.rand_like(y), backend=backend),
        "reparameterize": lambda: lcengine.reparameterize(x, y, seed=1, backend=backend).sum(),
    }


OPS = ("gaussian_kl", "distance_penalty", "constraint_loss", "reparameterize")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend,device", backend_device_params())
def test_create_graph_through_a_fused_op_raises(backend, device, op):
    x = torch.randn(4, 3, device=device, requires_grad=True)
    y = torch.randn(4, 3, device=device, requires_grad=op != "constraint_loss")
    loss = _losses(backend, x, y)[op]()
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, x, create_graph=True)
    loss = _losses(backend, x, y)[op]()
    (g,) = torch.autograd.grad(loss, x)  # first derivatives are unaffected
    assert torch.isfinite(g).all()


def test_create_graph_on_the_eager_backend_gives_second_derivatives():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    lv = torch.randn(4, 3, dtype=torch.float64)
    (g,) = torch.autograd.grad(lcengine.gaussian_kl(x, lv, backend="eager"), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    assert torch.allclose(h, torch.full_like(x, 1.0 / 4))  # d2/dmu2 of mean_rows sum mu^2 / 2
