# SPDX-License-Identifier: Apache-2.0
"""The native CPU runner of the fused latent optimizer (``_C.optimize_latents_cpu``).

The whole multi-step loop runs in C++ (csrc/optimize.cpp), with its GEMMs on the Fortran
``sgemm_`` that torch's own CPU library exports (MKL), found at run time through ctypes so that
``_C`` links neither BLAS nor libtorch. ``tuning.cpu_tile_rows`` and ``tuning.cpu_threads``
reach the loop through the argument struct.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import torch

from ...backend import native_module
from .config import OptimizeHyperParams, OptimizeTuning
from .prepare import Prepared

_blas_cache: dict[str, Any] = {}


# ---------------------------------------------------------------------------------------------
# BLAS discovery: torch's CPU library exports MKL's Fortran sgemm_.
# ---------------------------------------------------------------------------------------------


def _torch_cpu_library() -> str:
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"):
        path = os.path.join(lib_dir, name)
        if os.path.exists(path):
            return path
    raise OSError(f"no torch_cpu library under {lib_dir}")


def _check_sgemm(fn: Any) -> None:
    """A 2x3 @ 3x2 product through ``fn`` must match: catches an ILP64 or broken export."""
    c_int, c_float, fp = ctypes.c_int, ctypes.c_float, ctypes.POINTER(ctypes.c_float)
    fn.restype = None
    fn.argtypes = (
        [ctypes.c_char_p, ctypes.c_char_p]
        + [ctypes.POINTER(c_int)] * 3
        + [fp, fp, ctypes.POINTER(c_int), fp, ctypes.POINTER(c_int), fp, fp, ctypes.POINTER(c_int)]
    )
    a = (c_float * 6)(1, 2, 3, 4, 5, 6)  # column-major 2x3
    b = (c_float * 6)(1, 0, -1, 2, 1, 0)  # column-major 3x2
    c = (c_float * 4)(0, 0, 0, 0)
    m, n, k = c_int(2), c_int(2), c_int(3)
    lda, ldb, ldc = c_int(2), c_int(3), c_int(2)
    one, zero = c_float(1.0), c_float(0.0)
    fn(
        b"N",
        b"N",
        ctypes.byref(m),
        ctypes.byref(n),
        ctypes.byref(k),
        ctypes.byref(one),
        a,
        ctypes.byref(lda),
        b,
        ctypes.byref(ldb),
        ctypes.byref(zero),
        c,
        ctypes.byref(ldc),
    )
    expected = [1 - 5, 2 - 6, 2 + 3, 4 + 4]  # A @ B, column-major
    if [round(v, 4) for v in c] != expected:
        raise OSError(f"sgemm_ self-test gave {list(c)}, expected {expected}")


def blas_functions() -> tuple[int, int]:
    """Addresses of ``sgemm_`` and (0 if absent) ``MKL_Set_Num_Threads_Local`` in torch's CPU
    library. Raises ``RuntimeError`` with the reason when there is no usable sgemm_."""
    if "result" not in _blas_cache:
        try:
            lib = ctypes.CDLL(_torch_cpu_library())
            sgemm = lib.sgemm_
            _check_sgemm(sgemm)
            try:
                # The C entry point (int by value). The lower-case symbol of the same name is the
                # Fortran one (int by reference): in mkl_service.h it is a macro for this.
                set_local = ctypes.cast(lib.MKL_Set_Num_Threads_Local, ctypes.c_void_p).value or 0
            except AttributeError:
                set_local = 0
            _blas_cache["result"] = (ctypes.cast(sgemm, ctypes.c_void_p).value, set_local)
            _blas_cache["error"] = None
        except (OSError, AttributeError) as exc:
            _blas_cache["result"] = None
            _blas_cache["error"] = f"{type(exc).__name__}: {exc}"
    if _blas_cache["result"] is None:
        raise RuntimeError(
            "the native latent optimizer needs the BLAS sgemm_ exported by torch's "
            f"CPU library, which was not usable ({_blas_cache['error']})"
        )
    return _blas_cache["result"]


@torch.no_grad()
def run_cpu(
    prep: Prepared, hyper: OptimizeHyperParams, tuning: OptimizeTuning
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Runs the whole loop in C++ on ``prep``'s CPU tensors (float32 weights).

    Returns:
        ``(z [B, D] float32, converged [B] bool, steps [B] int64, logits [B, C] float32)``.
    """
    b, d, c = prep.rows, prep.dim, prep.num_outputs
    z_out = torch.empty(b, d)  # [B, D]
    converged = torch.zeros(b, dtype=torch.uint8)  # [B]
    steps_taken = torch.zeros(b, dtype=torch.int64)  # [B]
    logits = torch.empty(b, c)  # [B, C]
    sgemm, set_local = blas_functions()
    mod = native_module()
    args = prep.native_args(
        mod,
        z_out,
        converged,
        steps_taken,
        logits,
        hyper=hyper,
        tuning=tuning,
        sgemm=sgemm,
        blas_set_threads_local=set_local,
    )
    mod.optimize_latents_cpu(args)
    return z_out, converged.to(torch.bool), steps_taken, logits
