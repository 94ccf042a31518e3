# SPDX-License-Identifier: Apache-2.0
"""Backend selection, lazy loading of the native module and the Triton kernels, build_info().

Backends:
    eager   the PyTorch references in lcengine.reference (always available; also float64).
    native  lcengine._C: C++/OpenMP on CPU tensors, CUDA on GPU tensors (when compiled in).
    triton  the Triton kernels (GPU tensors; CPU tensors only under TRITON_INTERPRET=1).
    auto    the fastest available implementation for the tensor's device; falls back to eager
            with a single warning per device type. Never fails.

Precedence: the op's ``backend=`` argument, then the innermost ``use_backend`` context, then the
``LCENGINE_BACKEND`` environment variable, then ``auto``. Explicitly requesting a backend that is
not available raises ``RuntimeError`` saying why.

Availability is judged once per (backend, device type, device index) and cached for the process
(the CUDA device count, the device's capability, the imports); :func:`clear_availability_cache`
judges again. The public ops resolve their backend through :func:`choose_backend`, which
``torch.compile`` and strict ``torch.export`` call once while tracing
(``torch.compiler.assume_constant_result``): the backend in force at trace time is baked into the
graph, and a later ``use_backend`` block or ``LCENGINE_BACKEND`` does not reach a compiled graph.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
import warnings
from typing import Iterator, Optional

import torch

BACKENDS = ("auto", "eager", "native", "triton")
ENV_VAR = "LCENGINE_BACKEND"

# Order in which `auto` tries the fused backends, per device type (one place for this fact).
AUTO_ORDER = {"cpu": ("native",), "cuda": ("native", "triton")}

# Storage dtypes the fused kernels accept; eager also takes float64 (for gradcheck).
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
EAGER_DTYPES = FUSED_DTYPES + (torch.float64,)

_context_backend: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar(
    "lcengine_backend", default=None
)
_warned_fallback: set[str] = set()
_native_cache: dict[str, object] = {}
_triton_cache: dict[str, object] = {}
# (backend, device type, CUDA index or None) -> (the inputs it was judged with, reason or None)
_availability: dict[tuple[str, str, Optional[int]], tuple[tuple, Optional[str]]] = {}
_UNSET = object()


def _check_name(name: str, source: str) -> str:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"{source} must be one of {BACKENDS}, got {name!r}")
    return name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager selecting the backend for lcengine ops inside the block."""
    token = _context_backend.set(_check_name(name, "use_backend(name)"))
    try:
        yield
    finally:
        _context_backend.reset(token)


def requested_backend(backend: Optional[str] = None) -> str:
    """The backend name in force for a call, before availability is considered."""
    if backend is not None:
        return _check_name(backend, "backend")
    ctx = _context_backend.get()
    if ctx is not None:
        return ctx
    env = os.environ.get(ENV_VAR)
    if env:
        return _check_name(env.strip().lower(), f"environment variable {ENV_VAR}")
    return "auto"


def native_module():
    """The compiled ``lcengine._C`` module, or None if it could not be imported."""
    if "module" not in _native_cache:
        try:
            _native_cache["module"] = importlib.import_module("lcengine._C")
            _native_cache["error"] = None
        except ImportError as exc:  # not built, or built for another Python
            _native_cache["module"] = None
            _native_cache["error"] = f"{type(exc).__name__}: {exc}"
    return _native_cache["module"]


def triton_module():
    """The packaged Triton launchers (``lcengine._triton``), or None if Triton is unusable."""
    if "module" not in _triton_cache:
        try:
            _triton_cache["module"] = importlib.import_module("lcengine._triton")
            _triton_cache["error"] = None
        except Exception as exc:  # ImportError, or Triton failing to initialise its driver
            _triton_cache["module"] = None
            _triton_cache["error"] = f"{type(exc).__name__}: {exc}"
    return _triton_cache["module"]


def _triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _version_text(v: int) -> str:
    """CUDA's 1000 * major + 10 * minor as "major.minor"."""
    return f"{v // 1000}.{(v % 1000) // 10}"


def _cuda_no_device_reason(mod) -> str:
    """Why ``mod``'s CUDA runtime sees no device, from ``_C.cuda_status()``."""
    status_fn = getattr(mod, "cuda_status", None)
    if status_fn is None:
        return "lcengine._C has CUDA kernels but its CUDA runtime sees no device"
    st = status_fn()
    runtime = _version_text(st["runtime_version"]) if st.get("runtime_version") else "?"
    driver = _version_text(st["driver_version"]) if st.get("driver_version") else None
    err = f"{st.get('error_name', '?')}: {st.get('error_string', '?')}"
    torch_cuda = torch.version.cuda
    rebuild = (
        f"rebuild lcengine against torch's CUDA {torch_cuda} (CUDACXX=/path/to/nvcc-"
        f"{torch_cuda.split('.')[0]}.x pip install --no-build-isolation -e .)"
        if torch_cuda
        else "rebuild lcengine with the nvcc of the CUDA major this driver supports"
    )
    if driver is None:  # cudaDriverGetVersion: no libcuda at all
        return f"lcengine._C's CUDA {runtime} runtime finds no CUDA driver ({err})"
    if st.get("error_name") == "cudaErrorInsufficientDriver" or (
        st.get("runtime_version") and st["driver_version"] // 1000 < st["runtime_version"] // 1000
    ):
        return (
            f"lcengine._C's CUDA {runtime} runtime cannot use this driver (CUDA {driver}): "
            f"{err}; {rebuild}"
        )
    return (
        f"lcengine._C's CUDA {runtime} runtime sees no device ({err}; driver CUDA {driver}, "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})"
    )


def _parse_arch(entry: str) -> Optional[tuple[int, str, bool, bool]]:
    """One CMake CUDA architecture ("80", "90-real", "90a-virtual", "100f") as (number, variant
    letter, has SASS, has PTX); None for what this cannot judge ("all", "native", ...)."""
    body, _, kind = entry.strip().partition("-")
    variant = body[-1] if body[-1:] in ("a", "f") else ""
    digits = body[: len(body) - len(variant)]
    if not digits.isdigit() or kind not in ("", "real", "virtual"):
        return None
    return int(digits), variant, kind in ("", "real"), kind in ("", "virtual")


def _arch_runs_on(entry: tuple[int, str, bool, bool], cap: int) -> bool:
    """Whether a build entry gives code device capability ``cap`` (10 * major + minor) runs.

    SASS sm_XY runs on devices of the same major with minor >= Y (``a``: sm_XY only); PTX
    compute_XY is compiled by the driver for any device >= XY (``a``: XY only; ``f``: the
    same major).
    """
    num, variant, sass, ptx = entry
    same_major = cap // 10 == num // 10
    if sass and (cap == num if variant == "a" else same_major and cap >= num):
        return True
    if ptx:
        if variant == "a":
            return cap == num
        if variant == "f":
            return same_major and cap >= num
        return cap >= num
    return False


@functools.lru_cache(maxsize=64)
def _arch_reason(archs: str, capability: tuple[int, int], index: int) -> Optional[str]:
    """Why kernels built for ``archs`` (``_C.cuda_architectures``, e.g. "80,90") cannot run on
    a device of ``capability``, or None if they can (or the list cannot be judged)."""
    entries = [_parse_arch(e) for e in archs.replace(";", ",").split(",") if e.strip()]
    if not entries or any(e is None for e in entries):
        return None
    cap = 10 * capability[0] + capability[1]
    if any(_arch_runs_on(e, cap) for e in entries):
        return None
    return (
        f"lcengine._C's CUDA kernels were built for architectures {archs.replace(',', ';')} "
        f"(LCENGINE_CUDA_ARCHITECTURES) and cannot run on cuda:{index}, compute capability "
        f"{capability[0]}.{capability[1]} (sm_{cap}); rebuild with "
        f'-C cmake.define.LCENGINE_CUDA_ARCHITECTURES="{cap};..." to include it'
    )


def _device_index(device) -> Optional[int]:
    """The CUDA device index of ``device`` (its own, else the current device), or None when
    torch has no usable CUDA."""
    index = device.index if isinstance(device, torch.device) else None
    if index is not None:
        return index
    if not torch.cuda.is_available():
        return None
    return torch.cuda.current_device()


def clear_availability_cache() -> None:
    """Forget every availability judged so far: the next call judges each backend again."""
    _availability.clear()


def _availability_inputs() -> tuple:
    """What a cached judgment depends on besides its key: the loaded modules and the Triton
    interpreter flag (compared by identity, so a replaced module is judged again)."""
    return (
        _native_cache.get("module", _UNSET),
        _triton_cache.get("module", _UNSET),
        _triton_interpret(),
    )


def unavailable_reason(name: str, device) -> Optional[str]:
    """Why ``name`` cannot run on tensors of ``device``, or None if it can.

    ``device`` is a device type ("cpu", "cuda") or a ``torch.device``; for CUDA the native
    backend is judged on that device's index (the current device when it has none): a device
    older than every architecture compiled into ``_C`` makes it unavailable. Judged once per
    (backend, device type, device index) and cached (:func:`clear_availability_cache`).
    """
    device_type = device.type if isinstance(device, torch.device) else device
    if name == "eager":
        return None
    if name not in ("native", "triton"):
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    index = _device_index(device) if device_type == "cuda" else None
    key = (name, device_type, index)
    inputs = _availability_inputs()
    hit = _availability.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], inputs)):
        return hit[1]
    reason = _judge_availability(name, device_type, index)
    _availability[key] = (_availability_inputs(), reason)
    return reason


def _judge_availability(name: str, device_type: str, index: Optional[int]) -> Optional[str]:
    """unavailable_reason without the cache; ``index`` is the CUDA device's (None: unknown)."""
    if name == "native":
        mod = native_module()
        if mod is None:
            return f"lcengine._C could not be imported ({_native_cache['error']})"
        if device_type == "cpu":
            return None
        if device_type == "cuda":
            if not mod.with_cuda:
                return (
                    "lcengine._C was built without CUDA kernels (nvcc not found, "
                    "LCENGINE_CUDA=OFF, or nvcc's CUDA major differs from torch's)"
                )
            if mod.cuda_device_count() < 1:
                return _cuda_no_device_reason(mod)
            if not torch.cuda.is_available():
                return None  # no CUDA tensors without torch's CUDA: nothing to judge
            if index is None or index >= torch.cuda.device_count():
                return None
            return _arch_reason(
                getattr(mod, "cuda_architectures", ""),
                tuple(torch.cuda.get_device_capability(index)),
                index,
            )
        return f"no native kernels for device type {device_type!r}"
    if name == "triton":
        if device_type == "cpu" and not _triton_interpret():
            return "Triton runs CPU tensors only under TRITON_INTERPRET=1"
        if device_type not in ("cpu", "cuda"):
            return f"no Triton kernels for device type {device_type!r}"
        if device_type == "cuda" and not torch.cuda.is_available():
            return "no CUDA device is available"
        if triton_module() is None:
            return f"Triton kernels could not be loaded ({_triton_cache['error']})"
        return None
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


def resolve_backend(
    backend: Optional[str],
    device: torch.device,
    dtype: Optional[torch.dtype] = None,
    *,
    stacklevel: int = 3,
) -> str:
    """The concrete backend ("eager", "native" or "triton") to run an op on ``device``.

    Args:
        backend: the op's ``backend=`` argument (None: context, environment, then auto).
        device: device of the op's tensors.
        dtype: storage dtype; float64 only runs on eager (auto falls back to it).
        stacklevel: ``warnings.warn``'s, for the fallback warning (3: this function's caller's
            caller).
    """
    name = requested_backend(backend)
    device = torch.device(device)
    device_type = device.type
    if name == "auto":
        if dtype is not None and dtype not in FUSED_DTYPES:
            return "eager"
        for candidate in AUTO_ORDER.get(device_type, ()):
            if unavailable_reason(candidate, device) is None:
                return candidate
        if device_type not in _warned_fallback:
            _warned_fallback.add(device_type)
            reasons = (
                "; ".join(
                    f"{c}: {unavailable_reason(c, device)}" for c in AUTO_ORDER.get(device_type, ())
                )
                or "none registered"
            )
            warnings.warn(
                f"lcengine: no fused backend for {device_type} tensors ({reasons}); "
                "falling back to the eager PyTorch references",
                RuntimeWarning,
                stacklevel=stacklevel,
            )
        return "eager"
    reason = unavailable_reason(name, device)
    if reason is not None:
        raise RuntimeError(
            f"backend {name!r} was requested for {device_type} tensors but is not "
            f"available: {reason}"
        )
    return name


_ERRORS = {"ValueError": ValueError, "RuntimeError": RuntimeError}


@torch.compiler.assume_constant_result
def _traced_choice(
    backend: Optional[str], device: torch.device, dtype: Optional[torch.dtype], stacklevel: int
) -> tuple[str, str, str]:
    """:func:`resolve_backend` as ``(name, "", "")`` or ``("", error type, message)``.

    Marked ``assume_constant_result``: Dynamo calls it once while tracing, outside the traced
    code (it reads a ContextVar and the environment and calls ``_C``), and puts its result in
    the graph as a constant, without a guard. Errors come back as values so that the caller
    raises them inside the traced code, where Dynamo reports them as themselves.
    """
    try:
        return resolve_backend(backend, device, dtype, stacklevel=stacklevel + 1), "", ""
    except ValueError as exc:  # a bad backend name
        return "", "ValueError", str(exc)
    except RuntimeError as exc:  # an explicit backend that is not available
        return "", "RuntimeError", str(exc)


def choose_backend(
    backend: Optional[str],
    device: torch.device,
    dtype: Optional[torch.dtype] = None,
    *,
    stacklevel: int = 2,
) -> str:
    """:func:`resolve_backend` for the public ops, also inside ``torch.compile``/``torch.export``.

    Eager calls resolve on every call. Under Dynamo (``torch.compile``, strict
    ``torch.export``) the choice is made once, when the graph is traced, and baked into it: the
    graph holds the chosen op (``torch.ops.lcengine.*`` with the backend as a constant argument,
    or the eager reference's ATen ops) and never reads ``use_backend``/``LCENGINE_BACKEND``
    again; trace again (``torch._dynamo.reset()``, or a new export) to change it. Non-strict
    ``torch.export`` runs this function as plain Python while tracing, with the same result.

    Args:
        backend, device, dtype: as for :func:`resolve_backend`.
        stacklevel: ``warnings.warn``'s, relative to this function, for the fallback warning.
    """
    name, error, message = _traced_choice(backend, device, dtype, stacklevel + 1)
    if error:
        raise _ERRORS[error](message)
    return name


def _cuda_build_info(mod) -> dict:
    """build_info()'s CUDA keys: what _C was built with and what its runtime sees."""
    with_cuda = bool(mod is not None and mod.with_cuda)
    archs = [_parse_arch(e) for e in (mod.cuda_architectures if with_cuda else "").split(",")]
    known = [e for e in archs if e is not None]
    info = {
        "cuda_runtime": (getattr(mod, "cuda_runtime_version", None) if with_cuda else None),
        "cuda_torch_built_against": getattr(mod, "torch_cuda_version", None),
        "cuda_min_arch": (f"sm_{min(e[0] for e in known)}" if known else None),
        "cuda_driver": None,
        "cuda_error": None,
        "cuda_devices": 0,
    }
    if with_cuda and hasattr(mod, "cuda_status"):
        st = mod.cuda_status()
        info["cuda_driver"] = (
            _version_text(st["driver_version"]) if st.get("driver_version") else None
        )
        info["cuda_error"] = None if st.get("error", 0) == 0 else st.get("error_name")
        info["cuda_devices"] = st.get("device_count", 0)
    return info


def build_info() -> dict:
    """What was built and what is usable here: version, CUDA, GPU, Triton, OpenMP threads."""
    from . import __version__

    mod = native_module()
    info = {
        "version": __version__,
        "torch": torch.__version__,
        "native_available": mod is not None,
        "native_error": _native_cache.get("error"),
        "cuda_compiled": bool(mod is not None and mod.with_cuda),
        "cuda_architectures": (mod.cuda_architectures if mod is not None else ""),
        **_cuda_build_info(mod),
        "openmp": bool(mod is not None and mod.with_openmp),
        "openmp_threads": (mod.cpu_num_threads() if mod is not None else 0),
        "cpu_simd_level": (mod.cpu_simd_level() if mod is not None else None),
        "gpu_available": torch.cuda.is_available(),
        "gpu_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "triton_interpret": _triton_interpret(),
    }
    try:
        import triton  # noqa: F401

        info["triton_version"] = triton.__version__
    except Exception as exc:  # triton missing or broken
        info["triton_version"] = None
        info["triton_error"] = f"{type(exc).__name__}: {exc}"
    for device_type in ("cpu", "cuda"):
        info[f"backends_{device_type}"] = {
            name: (unavailable_reason(name, device_type) or "available")
            for name in ("eager", "native", "triton")
        }
    info["auto_cpu"] = resolve_backend("auto", torch.device("cpu"))
    info["requested_backend"] = requested_backend()
    return info
