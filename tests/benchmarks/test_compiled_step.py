# SPDX-License-Identifier: Apache-2.0
"""The torch.compile contender of the optimizer bench: torch.compile of
lcengine.reference.dense_step_ref, looped with the step number as a tensor."""

import torch

from lcengine.benchmarks import OptimizerCase, compiled_dense_loop, dense_loop, optimizer_inputs
from lcengine.reference import dense_step_ref, optimize_latents_ref

TINY = OptimizerCase("tiny", 8, 4, (8, 8), "relu", 4, attributes=2, embed_dim=2, compile_step=True)


def test_eager_dense_loop_matches_the_reference_loop():
    """Every row takes every step (unreachable thresholds), so the dense loop does what the
    compacting eager loop does."""
    x = optimizer_inputs(TINY)
    z_dense = dense_loop(dense_step_ref, x, TINY.steps)()  # [B, D]
    z_ref = optimize_latents_ref(
        x["z"], x["y"], x["mask"], x["real"], x["attr"], x["sigma_bar"], **x["kwargs"]
    )[0]  # [B, D]
    assert not torch.equal(z_dense, x["z"])
    torch.testing.assert_close(z_dense, z_ref, atol=1e-6, rtol=1e-5)


def test_compiled_loop_matches_the_eager_dense_loop():
    """One graph serves every step (the step is a tensor input), and, where Dynamo can trace
    torch.autograd.grad, the step compiles without a graph break (fullgraph=True)."""
    from torch._dynamo.utils import counters

    fullgraph = hasattr(torch._dynamo.config, "trace_autograd_ops")
    x = optimizer_inputs(TINY)
    torch._dynamo.reset()
    counters.clear()
    z_compiled = compiled_dense_loop(x, TINY.steps, fullgraph=fullgraph)()  # [B, D]
    if fullgraph:
        assert counters["stats"]["unique_graphs"] == 1
    z_eager = dense_loop(dense_step_ref, x, TINY.steps)()  # [B, D]
    torch.testing.assert_close(z_compiled, z_eager, atol=1e-6, rtol=1e-5)


def test_rows_that_satisfy_the_case_thresholds_stay_put():
    """A converging case (reachable thresholds): rows satisfied at the start keep their latents
    in the compiled loop as in the eager one."""
    case = OptimizerCase("tiny", 16, 4, (8,), "relu", 3, attributes=2, embed_dim=2, converging=True)
    x = optimizer_inputs(case)
    eager = dense_loop(dense_step_ref, x, case.steps)()  # [B, D]
    compiled = compiled_dense_loop(x, case.steps)()  # [B, D]
    frozen = (eager == x["z"]).all(1)  # [B]
    assert 0 < int(frozen.sum()) < case.rows
    assert torch.equal(compiled[frozen], x["z"][frozen])
    torch.testing.assert_close(compiled, eager, atol=1e-6, rtol=1e-5)
