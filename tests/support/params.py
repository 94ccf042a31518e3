# SPDX-License-Identifier: Apache-2.0
"""Test parameters shared by every op test: devices, backends, dtype tolerances, odd shapes.

Used at collection time (inside ``pytest.mark.parametrize``), so these are functions and
constants rather than fixtures.
"""

import os

import pytest
import torch

from lcengine.backend import unavailable_reason

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
FUSED = ("native", "triton")

# (dtype, atol, rtol). Kernels compute in float32 and store in the input dtype, as the eager
# reference does, so half-precision results differ by at most about one unit in the last place
# of the storage type: bf16 has 8 bits of mantissa (~0.4% per ulp), fp16 11 bits (~0.05%).
DTYPES = [
    (torch.float32, 1e-5, 1e-5),
    (torch.float16, 2e-3, 2e-3),
    (torch.bfloat16, 1e-2, 1.6e-2),
]


def interpreter_tolerance(backend, device, dtype, atol, rtol):
    """Tolerances widened for a known Triton interpreter gap (checked, not skipped).

    Triton 3.6's interpreter truncates float32 -> bfloat16 stores instead of rounding to nearest
    even (compiled kernels round correctly), so a value stored, reloaded and updated over a few
    steps (latent_adam_) can drift by two bf16 ulps instead of one.
    """
    interpreted = backend == "triton" and device == "cpu"
    if interpreted and dtype == torch.bfloat16:
        return atol * 5, rtol * 2
    return atol, rtol


def backend_device_params(backends=FUSED):
    """(backend, device) pairs, each skipped with its reason when not available here.

    Set LCENGINE_REQUIRE=native,triton (as .ci/run does) to turn such skips into failures, so
    a broken build cannot pass as "skipped".
    """
    required = {b for b in os.environ.get("LCENGINE_REQUIRE", "").split(",") if b}
    params = []
    for device in DEVICES:
        for backend in backends:
            reason = unavailable_reason(backend, device)
            marks = [pytest.mark.triton] if backend == "triton" else []
            if device == "cuda":
                marks.append(pytest.mark.gpu)
            if reason is not None:
                if backend in required and device == "cpu":
                    raise RuntimeError(
                        f"LCENGINE_REQUIRE lists {backend!r} but it is not "
                        f"available on {device}: {reason}"
                    )
                marks.append(pytest.mark.skip(reason=reason))
            params.append(pytest.param(backend, device, marks=marks, id=f"{backend}-{device}"))
    return params


def small_shapes(backend):
    """Odd shapes; the Triton interpreter is slow, so it gets the small ones only."""
    shapes = [(1, 1), (1, 7), (7, 19), (19, 99), (3, 5, 7)]
    if backend != "triton" or torch.cuda.is_available():
        shapes += [(989, 33), (64, 1031)]
    return shapes
