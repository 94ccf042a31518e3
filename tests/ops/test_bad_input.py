# SPDX-License-Identifier: Apache-2.0
"""Bad input gets a ValueError/TypeError naming the argument, on every backend."""

import pytest
import torch

import lcengine
from support.params import backend_device_params

BACKENDS = backend_device_params(("eager", "native", "triton"))


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_reparameterize_bad_input(backend, device):
    mu = torch.zeros(3, 4, device=device)
    with pytest.raises(TypeError, match="mu must be float32"):
        lcengine.reparameterize(torch.zeros(3, 4, dtype=torch.int64), mu, seed=0, backend=backend)
    with pytest.raises(TypeError, match="mu must be a torch.Tensor"):
        lcengine.reparameterize([1.0, 2.0], mu, seed=0, backend=backend)
    with pytest.raises(ValueError, match="logvar must have the shape of mu"):
        lcengine.reparameterize(mu, torch.zeros(3, 5, device=device), seed=0, backend=backend)
    with pytest.raises(TypeError, match="logvar must have the dtype of mu"):
        lcengine.reparameterize(mu, mu.half(), seed=0, backend=backend)
    with pytest.raises(ValueError, match="seed must be in"):
        lcengine.reparameterize(mu, mu, seed=-1, backend=backend)
    with pytest.raises(ValueError, match="offset must be in"):
        lcengine.reparameterize(mu, mu, seed=0, offset=-5, backend=backend)
    with pytest.raises(TypeError, match="seed must be an int"):
        lcengine.reparameterize(mu, mu, seed=1.5, backend=backend)
    with pytest.raises(ValueError, match="mu must not be empty"):
        lcengine.reparameterize(
            torch.zeros(0, 4, device=device),
            torch.zeros(0, 4, device=device),
            seed=0,
            backend=backend,
        )
    with pytest.raises(ValueError, match="at least one dimension"):
        lcengine.reparameterize(torch.tensor(1.0), torch.tensor(1.0), seed=0, backend=backend)
    with pytest.raises(ValueError, match="all tensors must be on one device"):
        lcengine.reparameterize(mu, torch.zeros(3, 4, device="meta"), seed=0, backend=backend)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_standard_normal_bad_input(backend, device):
    with pytest.raises(ValueError, match="shape must be non-empty"):
        lcengine.standard_normal((3, 0), seed=0, device=device, backend=backend)
    with pytest.raises(TypeError, match="dtype must be a floating"):
        lcengine.standard_normal((3,), seed=0, device=device, dtype=torch.int32, backend=backend)
    with pytest.raises(ValueError, match="seed must be in"):
        lcengine.standard_normal((3,), seed=2**63, device=device, backend=backend)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_loss_ops_bad_input(backend, device):
    x = torch.zeros(4, 5, device=device)
    with pytest.raises(ValueError, match="reduction must be one of"):
        lcengine.gaussian_kl(x, x, reduction="avg", backend=backend)
    with pytest.raises(ValueError, match="sigma_bar must be finite and > 0"):
        lcengine.distance_penalty(x, x, 0.0, backend=backend)
    with pytest.raises(ValueError, match="sigma_bar must be finite and > 0"):
        lcengine.distance_penalty(x, x, float("nan"), backend=backend)
    with pytest.raises(ValueError, match=r"sigma_bar must be a scalar or have shape \[5\]"):
        lcengine.distance_penalty(x, x, torch.ones(4, device=device), backend=backend)
    with pytest.raises(ValueError, match="sigma_bar must be finite and > 0 everywhere"):
        lcengine.distance_penalty(
            x, x, torch.tensor([1.0, 1, 1, -1, 1], device=device), backend=backend
        )
    with pytest.raises(ValueError, match="z_ref must have the shape of z"):
        lcengine.distance_penalty(x, x[:, :3], 1.0, backend=backend)
    with pytest.raises(ValueError, match="target must have the shape of logits"):
        lcengine.constraint_loss(x, x[:2], backend=backend)
    with pytest.raises(ValueError, match="does not broadcast"):
        lcengine.constraint_loss(x, x, weight=torch.ones(3, device=device), backend=backend)
    with pytest.raises(ValueError, match="target must not require grad"):
        lcengine.constraint_loss(x, x.clone().requires_grad_(), backend=backend)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_latent_adam_bad_input(backend, device):
    z = torch.zeros(4, 5, device=device)
    state = (z, z.clone(), z.clone(), z.clone())
    with pytest.raises(ValueError, match="step must be in"):
        lcengine.latent_adam_(*state, 0, lr=0.1, backend=backend)
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        lcengine.latent_adam_(*state, 1, lr=-0.1, backend=backend)
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0, 1\)"):
        lcengine.latent_adam_(*state, 1, lr=0.1, betas=(0.9, 1.0), backend=backend)
    with pytest.raises(ValueError, match="active must have shape"):
        lcengine.latent_adam_(
            *state,
            1,
            lr=0.1,
            active=torch.ones(5, dtype=torch.bool, device=device),
            backend=backend,
        )
    with pytest.raises(TypeError, match="active must be a bool tensor"):
        lcengine.latent_adam_(
            *state, 1, lr=0.1, active=torch.ones(4, device=device), backend=backend
        )
    with pytest.raises(ValueError, match="exp_avg must have the shape of z"):
        lcengine.latent_adam_(z, z, z[:2], z, 1, lr=0.1, backend=backend)


@pytest.mark.parametrize("backend,device", backend_device_params())
def test_float64_rejected_by_fused_backends(backend, device):
    x = torch.zeros(2, 3, dtype=torch.float64, device=device)
    with pytest.raises(TypeError, match="use backend='eager' for float64"):
        lcengine.gaussian_kl(x, x, backend=backend)
