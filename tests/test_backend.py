# SPDX-License-Identifier: Apache-2.0
import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

import lcengine
from lcengine import backend as be


def test_precedence_argument_context_environment(monkeypatch):
    monkeypatch.setenv(be.ENV_VAR, "eager")
    assert be.requested_backend() == "eager"
    with lcengine.use_backend("native"):
        assert be.requested_backend() == "native"
        assert be.requested_backend("triton") == "triton"
        with lcengine.use_backend("auto"):
            assert be.requested_backend() == "auto"
        assert be.requested_backend() == "native"
    monkeypatch.delenv(be.ENV_VAR)
    assert be.requested_backend() == "auto"


def test_bad_backend_names(monkeypatch):
    with pytest.raises(ValueError, match="backend must be one of"):
        be.requested_backend("cuda")
    with pytest.raises(ValueError, match="use_backend"):
        with lcengine.use_backend("fast"):
            pass
    monkeypatch.setenv(be.ENV_VAR, "turbo")
    with pytest.raises(ValueError, match=be.ENV_VAR):
        be.requested_backend()


def test_explicit_unavailable_backend_raises(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="'triton' was requested for cpu tensors"):
        lcengine.gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3), backend="triton")


def test_auto_falls_back_to_eager_with_one_warning(monkeypatch):
    monkeypatch.setitem(be._native_cache, "module", None)
    monkeypatch.setitem(be._native_cache, "error", "ImportError: simulated")
    monkeypatch.setattr(be, "_warned_fallback", set())
    mu = torch.randn(3, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = lcengine.gaussian_kl(mu, mu)
        second = lcengine.gaussian_kl(mu, mu)
    fallbacks = [w for w in caught if "falling back" in str(w.message)]
    assert len(fallbacks) == 1 and "simulated" in str(fallbacks[0].message)
    torch.testing.assert_close(first, lcengine.reference.gaussian_kl_ref(mu, mu))
    assert torch.equal(first, second)


def test_auto_uses_eager_for_float64_without_warning():
    mu = torch.randn(3, 4, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = lcengine.gaussian_kl(mu, mu, reduction="none")
    assert out.dtype == torch.float64


def test_build_info_reports_what_was_built():
    info = lcengine.build_info()
    for key in (
        "version",
        "torch",
        "native_available",
        "cuda_compiled",
        "openmp_threads",
        "cpu_simd_level",
        "gpu_available",
        "triton_version",
        "backends_cpu",
        "backends_cuda",
    ):
        assert key in info
    if "native" in os.environ.get("LCENGINE_REQUIRE", ""):
        assert info["native_available"], info["native_error"]
        assert info["openmp"] and info["openmp_threads"] >= 1
        assert info["cpu_simd_level"] in ("avx512", "avx2", "baseline")
    cuda_mode = os.environ.get("LCENGINE_CUDA", "AUTO").upper()
    if info["native_available"] and shutil.which("nvcc") and cuda_mode != "OFF":
        # the CUDA sources must have compiled into _C wherever nvcc is present
        assert info["cuda_compiled"], "nvcc is on PATH but _C was built without CUDA kernels"
        assert "90" in info["cuda_architectures"]


def test_cli_info_json():
    proc = subprocess.run(
        [sys.executable, "-m", "lcengine.cli", "info", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["version"] == lcengine.__version__
