# SPDX-License-Identifier: Apache-2.0
"""optimize_latents as a pytest-benchmark suite: B=64 latents of width 64, two critics of four
hidden layers of 256 (ReLU), 300 Adam steps per call, every row taking every step; the eager
autograd loop (lcengine.reference.optimize_latents_ref) against lcengine's auto backend. The full
table (every case, GFLOP/s, fraction of a GEMM probe) is ``lcengine bench --ops
optimize_latents``."""

import pytest

from lcengine import optimize_latents
from lcengine.benchmarks import OPTIMIZER_CASES, optimizer_inputs
from lcengine.reference import optimize_latents_ref

CASE = OPTIMIZER_CASES["B64_D64_4x256_relu_300steps"]


@pytest.mark.benchmark(group="optimize_latents")
@pytest.mark.parametrize("contender", ["eager", "lcengine"])
def test_optimize_latents(benchmark, contender):
    x = optimizer_inputs(CASE)
    fn = optimize_latents_ref if contender == "eager" else optimize_latents

    def call():
        return fn(x["z"], x["y"], x["mask"], x["real"], x["attr"], x["sigma_bar"], **x["kwargs"])

    call()  # warm-up outside the measurement
    benchmark.pedantic(call, rounds=3, iterations=1)
