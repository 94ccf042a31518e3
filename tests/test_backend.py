# SPDX-License-Identifier: Apache-2.0
import json
import os
import re
import shutil
import subprocess
import sys
import types
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
    nvcc = shutil.which("nvcc")
    if info["native_available"] and nvcc and cuda_mode != "OFF":
        release = re.search(
            r"release (\d+)\.",
            subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout,
        )
        torch_major = (torch.version.cuda or "").split(".")[0]
        if torch_major and release and release.group(1) != torch_major:
            # CMakeLists.txt builds without CUDA kernels when nvcc's CUDA major is not torch's
            assert not info["cuda_compiled"]
            return
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


# ---------------------------------------------------------------------------------------------
# CUDA availability of the native backend, judged per device on a CPU machine: a fake _C in the
# module cache, torch.cuda's queries monkeypatched.
# ---------------------------------------------------------------------------------------------


def _fake_cuda_module(archs="80,90", count=1, **status):
    st = dict(
        device_count=count,
        error=0,
        error_name="cudaSuccess",
        error_string="no error",
        driver_version=13000,
        runtime_version=13000,
    )
    st.update(status)
    return types.SimpleNamespace(
        with_cuda=True,
        cuda_architectures=archs,
        cuda_runtime_version="13.0",
        torch_cuda_version="13.0",
        cuda_device_count=lambda: st["device_count"],
        cuda_status=lambda: dict(st),
        with_openmp=True,
        cpu_num_threads=lambda: 1,
        cpu_simd_level=lambda: "avx2",
    )


@pytest.fixture
def fake_gpus(monkeypatch):
    """Installs a fake _C and fake CUDA devices; returns a setter for their capabilities."""
    caps = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(caps))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None: caps[i or 0])
    monkeypatch.setitem(be._native_cache, "module", _fake_cuda_module())
    monkeypatch.setitem(be._native_cache, "error", None)
    monkeypatch.setitem(be._triton_cache, "module", None)
    monkeypatch.setitem(be._triton_cache, "error", "ImportError: simulated")
    monkeypatch.setattr(be, "_warned_fallback", set())

    def set_caps(*capabilities):
        caps.clear()
        caps.update(enumerate(capabilities))

    return set_caps


@pytest.mark.parametrize("cap", [(8, 0), (8, 6), (8, 9), (9, 0), (10, 0), (12, 0)])
def test_native_cuda_runs_on_built_and_newer_devices(fake_gpus, cap):
    # "80;90" embeds SASS and PTX for both: sm_8x runs sm_80 SASS, sm_90 its own, newer
    # majors JIT-compile the compute_90 PTX
    fake_gpus(cap)
    assert be.unavailable_reason("native", torch.device("cuda", 0)) is None
    assert be.resolve_backend("native", torch.device("cuda", 0)) == "native"


@pytest.mark.parametrize("cap", [(7, 5), (7, 0)])  # T4, V100
def test_old_device_makes_native_unavailable(fake_gpus, cap):
    fake_gpus(cap)
    sm = f"sm_{cap[0]}{cap[1]}"
    reason = be.unavailable_reason("native", torch.device("cuda", 0))
    assert reason is not None and sm in reason and "80;90" in reason, reason
    with pytest.raises(RuntimeError, match=sm):  # explicitly requested: the reason
        be.resolve_backend("native", torch.device("cuda", 0))
    with warnings.catch_warnings(record=True) as caught:  # auto: falls back, never fails
        warnings.simplefilter("always")
        assert be.resolve_backend("auto", torch.device("cuda", 0)) == "eager"
    assert any(sm in str(w.message) for w in caught)


def test_old_device_auto_moves_to_triton(fake_gpus, monkeypatch):
    fake_gpus((7, 5))
    monkeypatch.setitem(be._triton_cache, "module", object())
    monkeypatch.setitem(be._triton_cache, "error", None)
    assert be.resolve_backend("auto", torch.device("cuda", 0)) == "triton"


def test_capability_is_judged_on_the_tensors_device(fake_gpus, monkeypatch):
    fake_gpus((9, 0), (7, 5))
    assert be.resolve_backend("native", torch.device("cuda", 0)) == "native"
    with pytest.raises(RuntimeError, match="cuda:1.*sm_75"):
        be.resolve_backend("native", torch.device("cuda", 1))
    # no index: the current device
    assert be.unavailable_reason("native", "cuda") is None
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert "sm_75" in be.unavailable_reason("native", torch.device("cuda"))


@pytest.mark.parametrize(
    "archs, cap, ok",
    [
        ("80-real;90-real", (10, 0), False),  # SASS only: no newer major
        ("80-real;90-real", (8, 6), True),
        ("80-real,90", (10, 0), True),
        ("90a", (9, 0), True),
        ("90a", (10, 0), False),  # arch-specific PTX runs on sm_90 only
        ("80-virtual", (7, 5), False),
        ("75;80", (7, 5), True),
        ("all-major", (7, 5), True),  # not judged
    ],
)
def test_architecture_rule(archs, cap, ok):
    assert (be._arch_reason(archs, cap, 0) is None) == ok


def test_no_device_reason_names_the_cuda_error(fake_gpus, monkeypatch):
    mod = _fake_cuda_module(
        count=0,
        error=35,
        error_name="cudaErrorInsufficientDriver",
        error_string="CUDA driver version is insufficient for CUDA runtime version",
        driver_version=12040,
    )
    monkeypatch.setitem(be._native_cache, "module", mod)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    fake_gpus((9, 0))
    reason = be.unavailable_reason("native", torch.device("cuda", 0))
    assert "CUDA 13.0 runtime cannot use this driver (CUDA 12.4)" in reason, reason
    assert "cudaErrorInsufficientDriver" in reason and "12.4" in reason.split(";")[-1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert be.resolve_backend("auto", torch.device("cuda", 0)) == "eager"
    assert any("cudaErrorInsufficientDriver" in str(w.message) for w in caught)
    mod = _fake_cuda_module(
        count=0, error=100, error_name="cudaErrorNoDevice", error_string="no CUDA-capable device"
    )
    monkeypatch.setitem(be._native_cache, "module", mod)
    assert "cudaErrorNoDevice" in be.unavailable_reason("native", "cuda")


def test_build_info_cuda_keys(fake_gpus, monkeypatch):
    fake_gpus((9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "fake GPU")
    info = be.build_info()
    assert info["cuda_runtime"] == "13.0" and info["cuda_driver"] == "13.0"
    assert info["cuda_error"] is None and info["cuda_min_arch"] == "sm_80"
    assert info["cuda_devices"] == 1 and info["cuda_torch_built_against"] == "13.0"


def test_real_module_reports_its_cuda_build():
    mod = be.native_module()
    if mod is None:
        pytest.skip("lcengine._C is not built")
    assert isinstance(mod.torch_cuda_version, str) and mod.torch_cuda_version
    if not mod.with_cuda:
        assert mod.cuda_runtime_version == ""
        return
    major, minor = mod.cuda_runtime_version.split(".")
    assert int(major) >= 11 and minor.isdigit()
    st = mod.cuda_status()
    assert set(st) >= {"device_count", "error", "error_name", "driver_version", "runtime_version"}
    assert st["runtime_version"] // 1000 == int(major)
    if st["device_count"] == 0:  # this machine: the reason is the runtime's own error
        assert st["error_name"] in be.unavailable_reason("native", "cuda")
    info = lcengine.build_info()
    assert info["cuda_runtime"] == mod.cuda_runtime_version and info["cuda_min_arch"]
