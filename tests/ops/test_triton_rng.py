# SPDX-License-Identifier: Apache-2.0
"""The Triton RNG is Philox written out: the same integer stream as the eager reference bit for
bit on every Triton release, and a Triton older than the supported floor says why."""

import ast
import importlib
import inspect
import sys

import pytest
import torch

import lcengine
from lcengine import backend
from lcengine.reference.philox import philox_first_two_ref, philox_normal_ref
from support.params import backend_device_params

pytestmark = pytest.mark.triton

TRITON = backend_device_params(("triton",))
# (seed, offset): small, 64-bit seeds and offsets, offsets crossing 2^32 (the counter's high
# word), and the largest seed the ops accept
STREAMS = [(0, 0), (123, 7), (2**40 + 3, 2**33 - 5), (2**63 - 1, 2**32 - 300)]


def _counters(n, offset, device):
    return torch.arange(n, dtype=torch.int64, device=device) + offset  # [N]


@pytest.mark.parametrize("backend_name,device", TRITON)
@pytest.mark.parametrize("seed,offset", STREAMS)
def test_philox_words_equal_the_reference_bit_for_bit(backend_name, device, seed, offset):
    n = 600
    out = torch.empty(2, n, dtype=torch.int32, device=device)
    backend.triton_module().philox_words(out, seed, offset)
    w0, w1 = philox_first_two_ref(_counters(n, offset, device), seed)
    got = out.to(torch.int64) & 0xFFFFFFFF  # uint32 bits
    assert torch.equal(got[0], w0) and torch.equal(got[1], w1)


@pytest.mark.parametrize("backend_name,device", TRITON)
def test_philox_words_with_the_seeds_high_bit(backend_name, device):
    """The launcher reduces any seed modulo 2^64 (seeds >= 2^63 reach the kernel as uint64)."""
    seed, n = 2**64 - 1, 300
    out = torch.empty(2, n, dtype=torch.int32, device=device)
    backend.triton_module().philox_words(out, seed, 2**32 - 7)
    w0, w1 = philox_first_two_ref(_counters(n, 2**32 - 7, device), seed)
    got = out.to(torch.int64) & 0xFFFFFFFF
    assert torch.equal(got[0], w0) and torch.equal(got[1], w1)


@pytest.mark.parametrize("backend_name,device", TRITON)
@pytest.mark.parametrize("seed,offset", STREAMS)
def test_standard_normal_is_the_reference_stream(backend_name, device, seed, offset):
    """eps from the same words; log and cos are the platform's (a few ulp), so not bit for bit,
    but most values are identical and none differs beyond float rounding."""
    n = 600
    out = lcengine.standard_normal((n,), seed=seed, offset=offset, device=device, backend="triton")
    ref = philox_normal_ref(n, seed, offset, device)
    torch.testing.assert_close(out, ref, atol=4e-6, rtol=1e-6)
    assert (out == ref).float().mean().item() > 0.5


def test_rng_kernels_do_not_use_the_release_dependent_tl_randn():
    """tl.randn/tl.randint4x on int64 offsets ran Philox4x64 before Triton 3.4
    (triton-lang/triton#6832): the kernels call the explicit Philox instead."""
    from lcengine._triton import _math, rng

    banned = {"randn", "randn4x", "rand", "rand4x", "randint", "randint4x", "philox"}
    for module in (rng, _math):
        tree = ast.parse(inspect.getsource(module))
        calls = {
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "tl"
        }
        assert not calls & banned, (module.__name__, calls & banned)


def test_version_problem_names_installed_and_needed():
    from lcengine._triton import MIN_TRITON, version_problem

    need = ".".join(map(str, MIN_TRITON))
    assert version_problem() is None  # the installed release is supported
    assert version_problem("3.6.0") is None and version_problem("4.0.0+git1234") is None
    assert version_problem(f"{need}.0") is None
    old = f"{MIN_TRITON[0]}.{MIN_TRITON[1] - 1}.0" if MIN_TRITON[1] else "2.3.1"
    message = version_problem(old)
    assert old in message and f">= {need}" in message
    assert "cannot read" in version_problem("nightly")


def test_old_triton_makes_the_backend_unavailable_with_the_reason(monkeypatch):
    import triton

    monkeypatch.setattr(triton, "__version__", "3.1.0")
    for name in [m for m in sys.modules if m == "lcengine._triton" or m.startswith("lcengine._tr")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(backend, "_triton_cache", {})
    with pytest.raises(ImportError, match=r"Triton 3\.1\.0 is installed.*>= 3\.2"):
        importlib.import_module("lcengine._triton")
    reason = backend.unavailable_reason("triton", "cpu")
    assert reason is not None and "3.1.0" in reason and ">= 3.2" in reason


def test_pyproject_floor_is_the_supported_floor():
    """pyproject.toml's triton requirements say what ``MIN_TRITON`` says."""
    import re
    from pathlib import Path

    from lcengine._triton import MIN_TRITON

    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    floors = re.findall(r"triton>=(\d+)\.(\d+)", text)
    assert floors and all(tuple(map(int, f)) == MIN_TRITON for f in floors), floors
