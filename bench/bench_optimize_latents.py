# SPDX-License-Identifier: Apache-2.0
"""optimize_latents as a pytest-benchmark suite: the interactive-edit case (B=64, D=64, two 4x256
critics, 300 steps per call), eager autograd loop against lcengine's auto backend. The full table
(every case, GFLOP/s, fraction of a GEMM probe) is ``lcengine bench --ops optimize_latents``."""
import pytest

from lcengine.benchmarks import OPTIMIZER_CASES, _optimizer_inputs
from lcengine.ops.optimize_latents import optimize_latents
from lcengine.reference import optimize_latents_ref

CASE = OPTIMIZER_CASES["B64_D64_4x256_relu_300steps"]


@pytest.mark.benchmark(group="optimize_latents")
@pytest.mark.parametrize("contender", ["eager", "lcengine"])
def test_optimize_latents(benchmark, contender):
    x = _optimizer_inputs(CASE)
    fn = optimize_latents_ref if contender == "eager" else optimize_latents
    call = (lambda: fn(x["z"], x["y"], x["mask"], x["real"], x["attr"], 1.0, **x["kwargs"]))
    call()  # warm-up outside the measurement
    benchmark.pedantic(call, rounds=3, iterations=1)
