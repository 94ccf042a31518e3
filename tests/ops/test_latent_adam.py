# SPDX-License-Identifier: Apache-2.0
import pytest
import torch

import lcengine
from lcengine.ops.latent_adam import _latent_adam_op
from lcengine.reference import latent_adam_ref_
from support.params import DTYPES, backend_device_params, interpreter_tolerance, small_shapes

BACKENDS = backend_device_params()


def _state(shape, device, dtype):
    z = torch.randn(shape, device=device).to(dtype)
    grad = torch.randn(shape, device=device).to(dtype)
    m = (torch.randn(shape, device=device) * 0.1).to(dtype)
    v = (torch.rand(shape, device=device) * 0.1).to(dtype)
    return z, grad, m, v


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
@pytest.mark.parametrize("masked", [False, True])
def test_latent_adam_matches_reference(backend, device, dtype, atol, rtol, masked):
    atol, rtol = interpreter_tolerance(backend, device, dtype, atol, rtol)
    for shape in small_shapes(backend):
        state = _state(shape, device, dtype)
        ref_state = tuple(t.clone() for t in state)
        active = (torch.rand(shape[:-1], device=device) > 0.4) if masked else None
        for step in (1, 2, 7):
            lcengine.latent_adam_(
                *state, step, lr=0.05, betas=(0.9, 0.99), eps=1e-6, active=active, backend=backend
            )
            latent_adam_ref_(*ref_state, step, lr=0.05, betas=(0.9, 0.99), eps=1e-6, active=active)
        for t, r in zip(state, ref_state):
            torch.testing.assert_close(t, r, atol=atol, rtol=rtol)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_latent_adam_inactive_rows_bit_identical(backend, device):
    z, grad, m, v = _state((9, 13), device, torch.float32)
    before = [t.clone() for t in (z, m, v)]
    active = torch.zeros(9, dtype=torch.bool, device=device)
    active[::2] = True
    lcengine.latent_adam_(z, grad, m, v, 3, lr=0.1, active=active, backend=backend)
    for after, orig in zip((z, m, v), before):
        assert torch.equal(after[~active], orig[~active])
        assert not torch.equal(after[active], orig[active])


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_latent_adam_matches_torch_optim_adam(backend, device):
    z0 = torch.randn(5, 8, device=device)
    param = torch.nn.Parameter(z0.clone())
    opt = torch.optim.Adam([param], lr=0.01, betas=(0.8, 0.95), eps=1e-7)
    z = z0.clone()
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    for step in range(1, 6):
        grad = torch.sin(z * step)  # any deterministic gradient field
        param.grad = torch.sin(param.detach() * step)
        opt.step()
        lcengine.latent_adam_(
            z, grad, m, v, step, lr=0.01, betas=(0.8, 0.95), eps=1e-7, backend=backend
        )
    torch.testing.assert_close(z, param.detach(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_latent_adam_moment_coefficients_are_exact(backend, device):
    # v = (1 - beta2) g^2 on the first step: 1 - beta2 must be formed from the double beta2, not
    # from its float rounding (1 - float(0.999) is off by 1.3e-5 relative).
    g = torch.Generator().manual_seed(0)
    z, grad = (torch.randn(4, 9, generator=g).to(device) for _ in range(2))
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    ref = tuple(t.clone() for t in (z, grad, m, v))
    lcengine.latent_adam_(z, grad, m, v, 1, lr=0.1, backend=backend)
    latent_adam_ref_(*ref, 1, lr=0.1)
    torch.testing.assert_close(m, ref[2], rtol=1e-6, atol=0)
    torch.testing.assert_close(v, ref[3], rtol=1e-6, atol=0)
    torch.testing.assert_close(z, ref[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_latent_adam_non_contiguous_state(backend, device):
    z, grad, m, v = (t.t() for t in _state((6, 10), device, torch.float32))  # [10, 6] views
    ref_state = tuple(t.contiguous().clone() for t in (z, grad, m, v))
    out = lcengine.latent_adam_(z, grad, m, v, 1, lr=0.1, backend=backend)
    assert out is z
    latent_adam_ref_(*ref_state, 1, lr=0.1)
    for t, r in zip((z, grad, m, v), ref_state):
        torch.testing.assert_close(t, r, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_latent_adam_opcheck(backend, device):
    z, grad, m, v = _state((5, 7), device, torch.float32)
    active = torch.tensor([True, False, True, True, False], device=device)
    torch.library.opcheck(
        _latent_adam_op, (z, grad, m, v, active, 3, 0.1, 0.9, 0.999, 1e-8, backend)
    )
