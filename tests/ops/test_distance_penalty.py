# SPDX-License-Identifier: Apache-2.0
import pytest
import torch

import lcengine
from lcengine.ops.distance_penalty import _distance_penalty_op
from lcengine.reference import distance_penalty_ref
from support.asserts import assert_reduction_close
from support.params import DTYPES, backend_device_params, small_shapes

BACKENDS = backend_device_params()
REDUCTIONS = ("none", "mean", "sum")


def _sigma(kind, dim, device):
    if kind == "scalar":
        return 0.37
    return torch.rand(dim, device=device) + 0.2  # [D]


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("sigma_kind", ["scalar", "vector"])
def test_distance_penalty_matches_reference(
    backend, device, dtype, atol, rtol, reduction, sigma_kind
):
    for shape in small_shapes(backend):
        z = torch.randn(shape, device=device).to(dtype)
        z_ref = torch.randn(shape, device=device).to(dtype)
        sigma = _sigma(sigma_kind, shape[-1], device)
        out = lcengine.distance_penalty(z, z_ref, sigma, reduction=reduction, backend=backend)
        ref = distance_penalty_ref(z, z_ref, sigma, reduction=reduction)
        sigma64 = sigma.double() if isinstance(sigma, torch.Tensor) else sigma
        ref64 = distance_penalty_ref(z.double(), z_ref.double(), sigma64, reduction=reduction)
        assert out.dtype == dtype and out.shape == ref.shape
        assert_reduction_close(out, ref, ref64, floor=rtol)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("sigma_kind", ["scalar", "vector"])
def test_distance_penalty_gradients(backend, device, reduction, sigma_kind):
    z = torch.randn(7, 19, device=device, requires_grad=True)
    z_ref = torch.randn(7, 19, device=device, requires_grad=True)
    sigma = _sigma(sigma_kind, 19, device)
    out = lcengine.distance_penalty(z, z_ref, sigma, reduction=reduction, backend=backend)
    ref = distance_penalty_ref(z, z_ref, sigma, reduction=reduction)
    upstream = torch.randn_like(ref) if reduction == "none" else torch.tensor(0.3)
    grads = torch.autograd.grad(out, (z, z_ref), upstream)
    grads_ref = torch.autograd.grad(ref, (z, z_ref), upstream)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_distance_penalty_non_contiguous(backend, device):
    z = torch.randn(8, 5, device=device)
    z_ref = torch.randn(8, 5, device=device)
    out = lcengine.distance_penalty(z.t(), z_ref.t(), 0.5, reduction="none", backend=backend)
    ref = distance_penalty_ref(z.t().contiguous(), z_ref.t().contiguous(), 0.5, reduction="none")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_distance_penalty_reference_gradcheck_float64():
    z = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    z_ref = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    sigma = torch.rand(4, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(
        lambda a, b: distance_penalty_ref(a, b, sigma, reduction="none"), (z, z_ref)
    )


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_distance_penalty_opcheck(backend, device):
    z = torch.randn(5, 7, device=device, requires_grad=True)
    z_ref = torch.randn(5, 7, device=device, requires_grad=True)
    inv = torch.rand(7, device=device) + 0.5
    for reduction in REDUCTIONS:
        torch.library.opcheck(_distance_penalty_op, (z, z_ref, inv, reduction, True, backend))
