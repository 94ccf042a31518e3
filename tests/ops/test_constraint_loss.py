# SPDX-License-Identifier: Apache-2.0
import pytest
import torch

import lcengine
from lcengine.ops.constraint_loss import _constraint_loss_op
from lcengine.reference import constraint_loss_ref
from support.asserts import assert_reduction_close
from support.params import DTYPES, backend_device_params, small_shapes

BACKENDS = backend_device_params()
REDUCTIONS = ("none", "mean", "sum")
WEIGHTS = ("none", "last_dim", "full", "broadcast_rows")


def _weight(kind, shape, device):
    if kind == "none":
        return None
    if kind == "last_dim":
        return torch.rand(shape[-1], device=device)  # [A]
    if kind == "full":
        return (torch.rand(shape, device=device) > 0.3).float()  # [..., A] mask
    return torch.rand(shape[:-1] + (1,), device=device)  # [..., 1]


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_kind", WEIGHTS)
def test_constraint_loss_matches_reference(
    backend, device, dtype, atol, rtol, reduction, weight_kind
):
    for shape in small_shapes(backend):
        logits = (torch.randn(shape, device=device) * 4).to(dtype)
        target = torch.rand(shape, device=device) > 0.5  # bool targets are accepted
        weight = _weight(weight_kind, shape, device)
        out = lcengine.constraint_loss(
            logits, target, weight=weight, reduction=reduction, backend=backend
        )
        w_same = None if weight is None else weight.to(dtype)
        ref = constraint_loss_ref(logits, target, weight=w_same, reduction=reduction)
        ref64 = constraint_loss_ref(
            logits.double(),
            target,
            weight=None if weight is None else w_same.double(),
            reduction=reduction,
        )
        assert out.dtype == dtype and out.shape == ref.shape
        assert_reduction_close(out, ref, ref64, floor=rtol)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_constraint_loss_extreme_logits_stay_finite(backend, device):
    logits = torch.tensor(
        [[-1e4, -80.0, -20.0, 0.0, 20.0, 80.0, 1e4]], device=device, requires_grad=True
    )
    for t in (0.0, 1.0):
        target = torch.full_like(logits, t)
        loss = lcengine.constraint_loss(logits, target, reduction="none", backend=backend)
        (grad,) = torch.autograd.grad(loss.sum(), logits)
        assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
        # exact values: a confident right answer costs ~0, a confident wrong one |l|
        expected = torch.clamp_min(logits, 0) - logits * t + torch.log1p(torch.exp(-logits.abs()))
        torch.testing.assert_close(loss, expected.detach(), atol=1e-5, rtol=1e-6)
        torch.testing.assert_close(grad, (torch.sigmoid(logits) - t).detach(), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_kind", WEIGHTS)
def test_constraint_loss_gradients(backend, device, reduction, weight_kind):
    shape = (7, 19)
    logits = (torch.randn(shape, device=device) * 3).requires_grad_(True)
    target = (torch.rand(shape, device=device) > 0.5).float()
    weight = _weight(weight_kind, shape, device)
    out = lcengine.constraint_loss(
        logits, target, weight=weight, reduction=reduction, backend=backend
    )
    ref = constraint_loss_ref(logits, target, weight=weight, reduction=reduction)
    upstream = torch.randn_like(ref) if reduction == "none" else torch.tensor(2.5)
    (g,) = torch.autograd.grad(out, logits, upstream)
    (g_ref,) = torch.autograd.grad(ref, logits, upstream)
    torch.testing.assert_close(g, g_ref, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_constraint_loss_non_contiguous(backend, device):
    logits = torch.randn(6, 9, device=device)
    target = (torch.rand(6, 9, device=device) > 0.5).float()
    out = lcengine.constraint_loss(logits.t(), target.t(), reduction="none", backend=backend)
    ref = constraint_loss_ref(logits.t().contiguous(), target.t().contiguous(), reduction="none")
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)


@pytest.mark.slow
def test_constraint_loss_reference_gradcheck_float64():
    logits = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    target = (torch.rand(3, 4) > 0.5).double()
    assert torch.autograd.gradcheck(
        lambda lg: constraint_loss_ref(lg, target, reduction="none"), (logits,)
    )


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_constraint_loss_opcheck(backend, device):
    logits = torch.randn(5, 7, device=device, requires_grad=True)
    target = (torch.rand(5, 7, device=device) > 0.5).float()
    weight = torch.rand(7, device=device)
    for reduction in REDUCTIONS:
        torch.library.opcheck(
            _constraint_loss_op, (logits, target, None, 0, reduction, True, backend)
        )
        torch.library.opcheck(
            _constraint_loss_op, (logits, target, weight, 1, reduction, True, backend)
        )
