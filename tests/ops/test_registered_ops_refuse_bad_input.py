# SPDX-License-Identifier: Apache-2.0
"""The registered ops (``torch.ops.lcengine.*``, what torch.compile and torch.export call) check in
their own bodies what could make a kernel read or write outside its buffers: each case here
would have corrupted memory, read past a buffer or raised a bare KeyError without those checks."""

import pytest
import torch

import lcengine  # noqa: F401  (registers torch.ops.lcengine.*)

OPS = torch.ops.lcengine
FUSED = ("native", "triton")


@pytest.mark.parametrize("backend", FUSED)
def test_latent_adam_refuses_state_smaller_than_the_latents(backend):
    z = torch.zeros(64, 1000)
    small = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="exp_avg must have the shape of z"):
        OPS.latent_adam_(
            z, z.clone(), small, small.clone(), None, 1, 0.1, 0.9, 0.999, 1e-8, backend
        )


@pytest.mark.parametrize("backend", FUSED)
def test_latent_adam_refuses_aliased_buffers(backend):
    z = torch.randn(8, 5)
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    with pytest.raises(ValueError, match="z and exp_avg share memory"):
        OPS.latent_adam_(z, torch.randn(8, 5), z, v, None, 1, 0.1, 0.9, 0.999, 1e-8, backend)
    with pytest.raises(ValueError, match="z and grad share memory"):
        lcengine.latent_adam_(z, z, m, v, 1, lr=0.1, backend=backend)
    before = z.clone()
    with pytest.raises(ValueError, match="exp_avg and exp_avg_sq share memory"):
        lcengine.latent_adam_(z, torch.randn(8, 5), m, m[:], 1, lr=0.1, backend="eager")
    assert torch.equal(z, before)  # refused before anything was written


@pytest.mark.parametrize("backend", FUSED)
def test_latent_adam_refuses_non_contiguous_state_and_bad_mask(backend):
    z = torch.zeros(8, 6)[:, ::2]
    g, m, v = (torch.zeros(8, 3) for _ in range(3))
    with pytest.raises(ValueError, match="z must be contiguous"):
        OPS.latent_adam_(z, g, m, v, None, 1, 0.1, 0.9, 0.999, 1e-8, backend)
    z = torch.zeros(8, 3)
    with pytest.raises(ValueError, match="active must be a bool tensor of shape"):
        OPS.latent_adam_(
            z, g, m, v, torch.ones(3, dtype=torch.bool), 1, 0.1, 0.9, 0.999, 1e-8, backend
        )
    with pytest.raises(ValueError, match="step must be in"):
        OPS.latent_adam_(z, g, m, v, None, 0, 0.1, 0.9, 0.999, 1e-8, backend)


@pytest.mark.parametrize("backend", FUSED)
def test_reparameterize_refuses_a_short_logvar(backend):
    mu = torch.zeros(1 << 16, 16)
    with pytest.raises(ValueError, match="logvar must have the shape of mu"):
        OPS.reparameterize(mu, torch.zeros(4, 16), 0, 0, backend)
    with pytest.raises(ValueError, match="grad_z must have the shape of logvar"):
        OPS.reparameterize_backward(torch.zeros(4, 16), mu, 0, 0, backend)


@pytest.mark.parametrize("backend", FUSED)
def test_ops_refuse_unsupported_dtypes_with_a_type_error(backend):
    x = torch.zeros(4, 3, dtype=torch.int32)
    with pytest.raises(TypeError, match="mu must be float32, float16 or bfloat16"):
        OPS.reparameterize(x, x, 0, 0, backend)
    with pytest.raises(TypeError, match="mu must be float32, float16 or bfloat16"):
        OPS.gaussian_kl(x, x, "mean", False, backend)
    with pytest.raises(TypeError, match="dtype must be float32, float16 or bfloat16"):
        OPS.standard_normal([4, 3], 0, 0, torch.device("cpu"), torch.float64, backend)
    y = torch.zeros(4, 3)
    with pytest.raises(TypeError, match="target must have the dtype of logits"):
        OPS.constraint_loss(y, y.half(), None, 0, "mean", False, backend)


@pytest.mark.parametrize("backend", FUSED)
def test_ops_refuse_streams_that_would_overflow_the_counter(backend):
    with pytest.raises(ValueError, match="offset must be in"):
        OPS.standard_normal([4, 3], 0, 2**63 - 2, torch.device("cpu"), torch.float32, backend)
    with pytest.raises(ValueError, match="offset must be in"):
        OPS.reparameterize(torch.zeros(2, 2), torch.zeros(2, 2), 0, -1, backend)


@pytest.mark.parametrize("backend", FUSED)
def test_loss_ops_refuse_inconsistent_weights_scales_and_reductions(backend):
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="weight must have shape"):
        OPS.constraint_loss(x, x, torch.ones(2), 1, "mean", False, backend)
    with pytest.raises(ValueError, match="weight_mode 2 needs a weight"):
        OPS.constraint_loss(x, x, None, 2, "mean", False, backend)
    with pytest.raises(ValueError, match="inv_sigma_sq must be a float32 tensor"):
        OPS.distance_penalty(x, x, torch.ones(2), "mean", False, backend)
    with pytest.raises(ValueError, match="reduction must be one of"):
        OPS.gaussian_kl(x, x, "median", False, backend)


def test_ops_refuse_a_backend_without_a_kernel():
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="backend must be one of"):
        OPS.gaussian_kl(x, x, "mean", False, "eager")
