# SPDX-License-Identifier: Apache-2.0
import pytest
import torch

import lcengine
from lcengine.ops.reparameterize import _reparameterize_op, _standard_normal_op
from lcengine.reference import philox_normal_ref, reparameterize_ref, standard_normal_ref
from support.params import DTYPES, backend_device_params, small_shapes

BACKENDS = backend_device_params()
# log/cos implementations differ between libm, the C++ polynomial and CUDA by a few ulp; the
# largest |eps| is about 5.7, so 4e-6 absolute is a few float32 ulp there.
RNG_ATOL = 4e-6


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize(
    "seed,offset", [(0, 0), (123, 7), (2**40 + 3, 2**33 - 5), (2**63 - 1, 2**32 - 1)]
)
def test_standard_normal_matches_philox_reference(backend, device, seed, offset):
    n = 4099 if backend != "triton" or device == "cuda" else 515
    out = lcengine.standard_normal((n,), seed=seed, offset=offset, device=device, backend=backend)
    ref = philox_normal_ref(n, seed, offset, device)
    torch.testing.assert_close(out, ref, atol=RNG_ATOL, rtol=1e-6)


def test_philox_reference_moments():
    eps = philox_normal_ref(200_000, seed=5, offset=0)
    assert abs(eps.mean().item()) < 0.01
    assert abs(eps.std().item() - 1.0) < 0.01
    # different seeds and disjoint offsets give uncorrelated streams
    other = philox_normal_ref(200_000, seed=6, offset=0)
    assert abs(torch.corrcoef(torch.stack([eps, other]))[0, 1].item()) < 0.01


@pytest.mark.triton
def test_reference_stream_is_triton_randn():
    """The reference stream is also Triton's own tl.randn (from Triton 3.4 on: before, an int64
    offset selected Philox4x64); lcengine's Triton kernels compute Philox themselves."""
    triton = pytest.importorskip("triton")
    import triton.language as tl

    if tuple(int(p) for p in triton.__version__.split(".")[:2]) < (3, 4):
        pytest.skip(
            f"tl.randn runs another Philox variant before Triton 3.4 ({triton.__version__})"
        )

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and lcengine.backend.unavailable_reason("triton", "cpu"):
        pytest.skip("Triton interpreter not enabled")

    @triton.jit
    def randn_kernel(out_ptr, seed, offset, n, BLOCK: tl.constexpr):
        idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(out_ptr + idx, tl.randn(seed, idx.to(tl.int64) + offset), mask=idx < n)

    for seed, offset in [(1, 0), (2**35 + 11, 2**32 + 17)]:
        out = torch.empty(300, device=device)
        randn_kernel[(3,)](out, seed, offset, 300, BLOCK=128)
        torch.testing.assert_close(
            out, philox_normal_ref(300, seed, offset, device), atol=RNG_ATOL, rtol=1e-6
        )


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
def test_reparameterize_matches_reference(backend, device, dtype, atol, rtol):
    for shape in small_shapes(backend):
        mu = torch.randn(shape, device=device).to(dtype)
        logvar = (torch.randn(shape, device=device) * 2).to(dtype)
        out = lcengine.reparameterize(mu, logvar, seed=11, offset=5, backend=backend)
        ref = reparameterize_ref(mu, logvar, seed=11, offset=5)
        assert out.dtype == dtype and out.shape == mu.shape
        torch.testing.assert_close(out, ref, atol=max(atol, 4 * RNG_ATOL), rtol=rtol)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_reparameterize_batch_split_invariance(backend, device):
    rows, dim = 13, 7
    mu = torch.randn(rows, dim, device=device)
    logvar = torch.randn(rows, dim, device=device)
    full = lcengine.reparameterize(mu, logvar, seed=3, offset=100, backend=backend)
    part = lcengine.reparameterize(
        mu[5:9], logvar[5:9], seed=3, offset=100 + 5 * dim, backend=backend
    )
    torch.testing.assert_close(part, full[5:9], atol=0, rtol=0)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_reparameterize_non_contiguous(backend, device):
    base_mu = torch.randn(9, 6, device=device)
    base_lv = torch.randn(9, 6, device=device)
    mu, logvar = base_mu.t(), base_lv.t()  # [6, 9] non-contiguous
    assert not mu.is_contiguous()
    out = lcengine.reparameterize(mu, logvar, seed=1, backend=backend)
    ref = reparameterize_ref(mu.contiguous(), logvar.contiguous(), seed=1)
    torch.testing.assert_close(out, ref, atol=4 * RNG_ATOL, rtol=1e-5)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_reparameterize_gradients(backend, device):
    mu = torch.randn(7, 19, device=device, requires_grad=True)
    logvar = torch.randn(7, 19, device=device, requires_grad=True)
    upstream = torch.randn(7, 19, device=device)
    z = lcengine.reparameterize(mu, logvar, seed=9, offset=2, backend=backend)
    grads = torch.autograd.grad(z, (mu, logvar), upstream)
    z_ref = reparameterize_ref(mu, logvar, seed=9, offset=2)
    grads_ref = torch.autograd.grad(z_ref, (mu, logvar), upstream)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_reparameterize_reference_gradcheck_float64():
    mu = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m, lv: reparameterize_ref(m, lv, seed=4), (mu, logvar))


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_reparameterize_opcheck(backend, device):
    mu = torch.randn(5, 7, device=device, requires_grad=True)
    logvar = torch.randn(5, 7, device=device, requires_grad=True)
    torch.library.opcheck(_reparameterize_op, (mu, logvar, 1, 0, backend))
    torch.library.opcheck(
        _standard_normal_op, ([4, 3], 1, 0, torch.device(device), torch.float32, backend)
    )


def test_standard_normal_eager_float64_and_shapes():
    out = lcengine.standard_normal((2, 3), seed=1, dtype=torch.float64, backend="eager")
    assert out.dtype == torch.float64 and out.shape == (2, 3)
    torch.testing.assert_close(out, standard_normal_ref((2, 3), seed=1, dtype=torch.float64))
