# SPDX-License-Identifier: Apache-2.0
"""Every Triton launch runs inside the device guard (``lcengine._triton._common.device_guard``):
tensors on ``cuda:1`` launch on ``cuda:1`` whatever the current device.

On CPU the guard is a no-op; these tests replace it with a recording one, run every op's Triton
backend under the interpreter, and check that each kernel launch happened inside it and that
every kernel of the package was launched, so a launcher that bypasses the guard, or a new kernel
no test here drives, fails.
"""

import contextlib
import sys

import pytest
import torch

import lcengine
from lcengine import backend
from support.optimize_problems import make_problem
from support.params import backend_device_params

pytestmark = pytest.mark.triton

TRITON = backend_device_params(("triton",))


def _package_kernels() -> set:
    mod = backend.triton_module()
    names = set()
    for module in (mod.optimize, mod.rng, mod.row_losses, mod.adam):
        for name, obj in vars(module).items():
            if name.endswith("_kernel") and hasattr(obj, "fn"):
                names.add(name)
    return names


@pytest.fixture
def launches(monkeypatch):
    """[(kernel name, launched inside the guard, the guard's tensors' device)]."""
    from triton.runtime.interpreter import InterpretedFunction

    from lcengine._triton import _common

    depth, devices, seen = [0], [], []
    real_guard = _common.device_guard

    @contextlib.contextmanager
    def recording_guard(args):
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        devices.append(tensors[0].device if tensors else None)
        with real_guard(args):
            depth[0] += 1
            try:
                yield
            finally:
                depth[0] -= 1

    real_run = InterpretedFunction.run

    def run(self, *args, **kwargs):
        seen.append((self.fn.__name__, depth[0] > 0, devices[-1] if depth[0] else None))
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(_common, "device_guard", recording_guard)
    monkeypatch.setattr(InterpretedFunction, "run", run)
    return seen


def _run_every_op(device):
    torch.manual_seed(0)
    mu = torch.randn(3, 5, device=device, requires_grad=True)
    logvar = torch.randn(3, 5, device=device, requires_grad=True)
    z = lcengine.reparameterize(mu, logvar, seed=1, backend="triton")
    z.backward(torch.randn_like(z))  # upstream != 1: the backward kernel runs
    lcengine.standard_normal((4,), seed=2, device=device, backend="triton")
    mod = backend.triton_module()
    mod.philox_words(torch.empty(2, 8, dtype=torch.int32, device=device), 3, 0)
    lcengine.gaussian_kl(mu, logvar, backend="triton").backward()
    zz = torch.randn(3, 5, device=device, requires_grad=True)
    lcengine.distance_penalty(
        zz, torch.zeros(3, 5, device=device), 1.5, backend="triton"
    ).backward()
    logits = torch.randn(3, 4, device=device, requires_grad=True)
    target = (torch.rand(3, 4, device=device) > 0.5).float()
    lcengine.constraint_loss(logits, target, backend="triton").backward()
    p = torch.randn(3, 5, device=device)
    lcengine.latent_adam_(
        p,
        torch.randn_like(p),
        torch.zeros_like(p),
        torch.zeros_like(p),
        1,
        lr=0.1,
        backend="triton",
    )
    z0, y, mask, real, attr = make_problem(3, 4, (8,), "relu")
    lcengine.optimize_latents(
        z0.to(device),
        y.to(device),
        mask.to(device),
        real.to(device),
        attr.to(device),
        1.0,
        steps=2,
        backend="triton",
    )


@pytest.mark.parametrize("backend_name,device", TRITON)
def test_every_launch_goes_through_the_device_guard(launches, backend_name, device):
    _run_every_op(device)
    assert launches
    outside = sorted({name for name, guarded, _ in launches if not guarded})
    assert not outside, f"launched without _common.device_guard: {outside}"
    assert {dev for _, _, dev in launches} == {torch.device(device)}
    missing = _package_kernels() - {name for name, _, _ in launches}
    assert not missing, f"kernels no op launched here (drive them in this test): {missing}"


def test_guard_switches_only_for_cuda_tensors_off_the_current_device(monkeypatch):
    from torch._subclasses.fake_tensor import FakeTensorMode

    from lcengine._triton import _common

    assert _common.launch_device((torch.zeros(2), 3)) is None  # CPU: no switch
    assert _common.launch_device((4, 5.0)) is None  # no tensor
    assert isinstance(_common.device_guard((torch.zeros(2),)), contextlib.nullcontext)
    assert _common.launch_device((torch.empty(2, device="meta"),)) is None
    with FakeTensorMode():
        on_1 = torch.empty(2, device="cuda:1")  # [2]
    assert _common.launch_device((on_1,)) is None  # fake tensors launch nothing
    monkeypatch.setattr(_common, "_is_fake", lambda t: False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert _common.launch_device((on_1, torch.zeros(1))) == torch.device("cuda:1")
    guard = _common.device_guard((on_1,))
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert _common.launch_device((on_1,)) is None  # already current


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_ops_on_the_second_gpu_while_the_first_is_current():
    torch.cuda.set_device(0)
    mu = torch.randn(33, 17, device="cuda:1")
    logvar = torch.randn(33, 17, device="cuda:1")
    z = lcengine.reparameterize(mu, logvar, seed=5, backend="triton")
    torch.cuda.synchronize(1)
    ref = lcengine.reparameterize(mu.cpu(), logvar.cpu(), seed=5, backend="eager")
    torch.testing.assert_close(z.cpu(), ref, atol=2e-5, rtol=1e-5)
    z0, y, mask, real, attr = make_problem(9, 6, (16,), "relu")
    args = (z0, y, mask, real, attr)
    on1 = [a.to("cuda:1") for a in args]
    out = lcengine.optimize_latents(*on1, 1.0, steps=40, backend="triton")
    ref = lcengine.optimize_latents(*args, 1.0, steps=40, backend="eager")
    assert out.latents.device == torch.device("cuda:1")
    torch.testing.assert_close(out.latents.cpu(), ref.latents, atol=1e-3, rtol=1e-3)
    assert torch.cuda.current_device() == 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
