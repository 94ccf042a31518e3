# SPDX-License-Identifier: Apache-2.0
"""pytest-benchmark suites: ``pytest bench`` (kept out of the default run by testpaths).

Each row op is timed for eager PyTorch, torch.compile (default mode) and lcengine's auto backend
on the same inputs, using the cases defined once in ``lcengine.benchmarks.CASES``, through the
``time_row_op`` fixture below (fixtures, not imports: pytest's importlib mode resolves a plain
``import conftest`` to whichever conftest is first on the path). Shape: ``LCENGINE_BENCH_SHAPE``
as ROWSxDIM (default 65536x64 on CPU, 1048576x1024 on GPU).
"""

import os
from typing import Callable

import pytest
import torch

from lcengine.benchmarks import CASES, DEFAULT_SHAPES, parse_shape, timed_call

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SHAPE = parse_shape(os.environ.get("LCENGINE_BENCH_SHAPE", DEFAULT_SHAPES[DEVICE.type][0]))


@pytest.fixture(params=["eager", "compile", "lcengine"])
def contender(request) -> str:
    """Which implementation a row-op benchmark times."""
    return request.param


@pytest.fixture
def time_row_op(benchmark, contender) -> Callable[[str], None]:
    """``time_row_op(op)`` times ``CASES[op]`` for this test's ``contender`` at ``SHAPE``
    (float32), one warm-up (and compilation) call outside the measurement."""

    def time_op(op: str) -> None:
        case = CASES[op]
        inputs = case.make_inputs(*SHAPE, torch.float32, DEVICE)
        if contender == "eager":
            fn = case.eager
        elif contender == "compile":
            fn = torch.compile(case.eager, dynamic=False)
        else:

            def fn(x):
                return case.lcengine(x, "auto")

        call = timed_call(fn, inputs, case.wrt)
        call()
        if DEVICE.type == "cuda":
            benchmark(lambda: (call(), torch.cuda.synchronize()))
        else:
            benchmark(call)

    return time_op
