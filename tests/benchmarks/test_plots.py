# SPDX-License-Identifier: Apache-2.0
"""The PNG of a report: rates per contender derived from the report's own fields."""

import pytest

from lcengine.benchmarks.plots import optimizer_rates, plot_report, row_op_rates, serving_latencies


def test_rates_per_contender(reports):
    row = reports.row_op_row("gaussian_kl", 2.0, 1.9, 2.1, eager_ms=8.0, compile_ms=4.0)
    rates = row_op_rates(reports.report(rows=[row]))[("4096x64", "float32")]["gaussian_kl"]
    gbs = row["bytes_moved"] / 1e9
    assert rates == pytest.approx(
        {"eager": gbs / 8e-3, "compile[default]": gbs / 4e-3, "lcengine[native]": gbs / 2e-3}
    )
    opt = reports.report(
        optimizer_rows=[
            reports.optimizer_row("B64", 40.0),
            reports.optimizer_row("conv", 40.0, gflops=False),
        ]
    )
    ((case, rates),) = optimizer_rates(opt).items()  # the converging case has no GFLOP/s
    assert case.startswith("B=64 D=64")
    assert rates == pytest.approx(
        {"eager (float32)": 25.0, "compile[default]": 50.0, "lcengine[native]": 100.0}
    )


def test_plot_writes_a_png(reports, tmp_path):
    report = reports.report(
        rows=[reports.row_op_row(op, 2.0, 1.9, 2.1) for op in ("gaussian_kl", "latent_adam")]
        + [reports.row_op_row("gaussian_kl", 3.0, 2.9, 3.1, backend="triton")],
        optimizer_rows=[reports.optimizer_row("B64", 40.0)],
    )
    path = tmp_path / "report.png"
    plot_report(report, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no row to plot"):
        plot_report({"kind": "lcengine bench", "rows": []}, str(tmp_path / "empty.png"))


def test_serving_panels(tmp_path):
    def row(contender, batch, p50, skipped=None):
        return {"contender": contender, "batch": batch, "p50_ms": p50, "skipped": skipped}

    report = {
        "kind": "lcengine bench",
        "serving": {
            "rows": [
                row("eager module", 1, 0.4),
                row("AOTInductor package", 1, 0.15),
                row("ONNX Runtime", 1, None, skipped="onnxruntime is not installed"),
                row("optimize (fused)", 1, 44.0),
                row("optimize (eager)", 1, 480.0),
                row("eager module", 64, 2.0),
            ],
            "weight_read_floor": {"p50_ms": 0.13},
            "environment": {"device": "cpu", "cpu_name": "test", "torch_threads": 1},
        },
    }
    panels = serving_latencies(report)
    assert list(panels) == ["actor", "optimize"]
    assert panels["actor"] == {
        "batch 1": {"eager module": 0.4, "AOTInductor package": 0.15},
        "batch 64": {"eager module": 2.0},
    }
    assert panels["optimize"] == {"batch 1": {"optimize (fused)": 44.0, "optimize (eager)": 480.0}}
    path = tmp_path / "serving.png"
    plot_report(report, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
