# SPDX-License-Identifier: Apache-2.0
"""pytest-benchmark suites: ``pytest bench`` (kept out of the default run by testpaths).

Each op is timed for eager PyTorch, torch.compile (default mode) and lcengine's auto backend on
the same inputs, using the cases defined once in ``lcengine.benchmarks.CASES``. Shape:
``LCENGINE_BENCH_SHAPE`` (default 65536x64 on CPU, 1048576x1024 on GPU).
"""
import os

import pytest
import torch

from lcengine.benchmarks import CASES, DEFAULT_SHAPES, _timed_call, parse_shape

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SHAPE = parse_shape(os.environ.get("LCENGINE_BENCH_SHAPE", DEFAULT_SHAPES[DEVICE.type][0]))


def make_benchmark(op: str):
    """A parametrized pytest-benchmark test of ``op`` over the three contenders."""

    @pytest.mark.benchmark(group=op)
    @pytest.mark.parametrize("contender", ["eager", "compile", "lcengine"])
    def bench(benchmark, contender):
        case = CASES[op]
        inputs = case.make_inputs(*SHAPE, torch.float32, DEVICE)
        if contender == "eager":
            fn = case.eager
        elif contender == "compile":
            fn = torch.compile(case.eager, dynamic=False)
        else:
            fn = (lambda x: case.lcengine(x, "auto"))
        call = _timed_call(fn, inputs, case.wrt)
        call()  # warm-up (and compilation) outside the measurement
        if DEVICE.type == "cuda":
            benchmark(lambda: (call(), torch.cuda.synchronize()))
        else:
            benchmark(call)

    return bench
