# SPDX-License-Identifier: Apache-2.0
"""The machinery behind ``lcengine bench --ops optimize_latents``."""

import pytest


def test_bench_optimizer_rows(monkeypatch):
    """`lcengine bench --ops optimize_latents` machinery on a tiny case: every row carries its
    ratios, the eager reference and the compiled eager step are timed in the same run."""
    from lcengine import benchmarks as benchmark

    case = benchmark.OptimizerCase(
        "tiny", 8, 4, (8, 8), "relu", 3, attributes=2, embed_dim=2, compile_step=True
    )
    monkeypatch.setitem(benchmark.OPTIMIZER_CASES, "tiny", case)
    report = benchmark.run_optimizer(
        ["tiny"], warmup=0, reps=1, compile_modes=(), backends=("native", "eager"), progress=False
    )
    rows = {r["backend"]: r for r in report["rows"]}
    assert set(rows) == {"native", "eager"}
    for r in rows.values():
        assert r["speedup_vs_eager"] > 0 and r["GFLOPs"] > 0 and r["eager"] == "float32"
        assert r["ms_per_step"] == pytest.approx(r["time_ms"] / 3)
    assert "tiny" in benchmark.format_optimizer_table(report)
    assert benchmark.default_optimizer_cases("cuda") == [
        "gpu_B1M_D1024_4x2048_relu",
        "gpu_B1M_D64_4x256_relu",
        "gpu_B4096_D64_4x256_relu_300steps",
    ]
