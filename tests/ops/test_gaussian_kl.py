# SPDX-License-Identifier: Apache-2.0
import pytest
import torch

import lcengine
from lcengine.ops.gaussian_kl import _gaussian_kl_op
from lcengine.reference import gaussian_kl_ref
from support.asserts import assert_reduction_close
from support.params import DTYPES, backend_device_params, small_shapes

BACKENDS = backend_device_params()
REDUCTIONS = ("none", "mean", "sum")


def _inputs(shape, device, dtype, requires_grad=False):
    mu = torch.randn(shape, device=device).to(dtype).requires_grad_(requires_grad)
    logvar = (torch.randn(shape, device=device) * 1.5).to(dtype).requires_grad_(requires_grad)
    return mu, logvar


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gaussian_kl_matches_reference(backend, device, dtype, atol, rtol, reduction):
    for shape in small_shapes(backend):
        mu, logvar = _inputs(shape, device, dtype)
        out = lcengine.gaussian_kl(mu, logvar, reduction=reduction, backend=backend)
        ref = gaussian_kl_ref(mu, logvar, reduction=reduction)
        ref64 = gaussian_kl_ref(mu.double(), logvar.double(), reduction=reduction)
        assert out.dtype == dtype and out.shape == ref.shape
        assert_reduction_close(out, ref, ref64, floor=rtol)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gaussian_kl_gradients(backend, device, reduction):
    for shape in [(7, 19), (3, 2, 5)]:
        mu, logvar = _inputs(shape, device, torch.float32, requires_grad=True)
        out = lcengine.gaussian_kl(mu, logvar, reduction=reduction, backend=backend)
        ref = gaussian_kl_ref(mu, logvar, reduction=reduction)
        upstream = torch.randn_like(ref) if reduction == "none" else torch.tensor(1.7)
        for seed_upstream in (upstream, torch.ones_like(upstream)):
            grads = torch.autograd.grad(out, (mu, logvar), seed_upstream, retain_graph=True)
            grads_ref = torch.autograd.grad(ref, (mu, logvar), seed_upstream, retain_graph=True)
            for g, g_ref in zip(grads, grads_ref):
                torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_gaussian_kl_backward_twice_with_retained_graph(backend, device):
    mu, logvar = _inputs((4, 6), device, torch.float32, requires_grad=True)
    out = lcengine.gaussian_kl(mu, logvar, backend=backend)
    out.backward(retain_graph=True)
    first = mu.grad.clone()
    out.backward()
    torch.testing.assert_close(mu.grad, 2 * first)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_gaussian_kl_non_contiguous(backend, device):
    mu, logvar = _inputs((11, 5), device, torch.float32)
    out = lcengine.gaussian_kl(mu.t(), logvar.t(), reduction="none", backend=backend)
    ref = gaussian_kl_ref(mu.t().contiguous(), logvar.t().contiguous(), reduction="none")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_gaussian_kl_reference_gradcheck_float64():
    mu, logvar = _inputs((3, 4), "cpu", torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda m, lv: gaussian_kl_ref(m, lv, reduction="none"), (mu, logvar)
    )


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gaussian_kl_opcheck(backend, device, reduction):
    mu, logvar = _inputs((5, 7), device, torch.float32, requires_grad=True)
    torch.library.opcheck(_gaussian_kl_op, (mu, logvar, reduction, True, backend))
    torch.library.opcheck(
        _gaussian_kl_op, (mu.detach(), logvar.detach(), reduction, False, backend)
    )


def test_gaussian_kl_backward_makes_no_extra_pass():
    """With an upstream gradient of one, backward returns the gradient the forward wrote: no
    zero-filled buffers for the op's auxiliary outputs, no multiply (a regression of 2x)."""
    if lcengine.backend.unavailable_reason("native", "cpu"):
        pytest.skip("native backend not built")
    mu, logvar = _inputs((64, 33), "cpu", torch.float32, requires_grad=True)
    out = lcengine.gaussian_kl(mu, logvar, backend="native")
    with torch.profiler.profile() as prof:
        torch.autograd.grad(out, (mu, logvar))
    names = {e.name for e in prof.events()}
    assert not names & {"aten::zeros", "aten::zero_", "aten::mul"}, names
