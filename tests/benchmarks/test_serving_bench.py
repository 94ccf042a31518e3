# SPDX-License-Identifier: Apache-2.0
"""``lcengine bench --ops serving``: per-request latency of a run's sampler, its AOTInductor and
ONNX exports and its optimize mode, with the goals computed from the measured numbers.

One bench runs (module-scoped: the AOTInductor compile dominates) on a small synthetic run
through the CLI with tiny request counts; the tests read its JSON report and printed table."""

import argparse
import contextlib
import io
import json
import math
import sys

import pytest

from lcengine.benchmarks import add_arguments, run_from_args
from lcengine.benchmarks.serving import (
    ACTOR_CONTENDERS,
    AOTI,
    EAGER_MODULE,
    ONNX,
    OPTIMIZE_CONTENDERS,
    OPTIMIZE_EAGER,
    OPTIMIZE_FUSED,
    digits_sizes,
    make_serving_run,
    onnx_unavailable_reason,
    serving_goals,
)

BATCHES = (1, 3)
SMALL = {
    "fit_steps": 4,
    "rows": 256,
    "hidden": [32, 32],
    "attribute_hidden": [32, 32],
    "embed_dim": 8,
    "decoder_hidden": [64],
    "sampling": {"steps": 12, "lr": 0.3, "tau_r": 0.9, "tau_a": 0.99, "start": "actor"},
}


def bench(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(report["serving"], printed output) of one small run of the bench."""
    root = tmp_path_factory.mktemp("serving")
    run = make_serving_run(root / "run", **SMALL)
    path = root / "serving.json"
    argv = ["--ops", "serving", "--device", "cpu", "--serving-run", str(run), "--json", str(path),
            "--serving-batches", ",".join(map(str, BATCHES)), "--serving-requests", "6",
            "--serving-optimize-requests", "2"]  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench(argv) == 0
    report = json.loads(path.read_text())
    assert set(report) >= {"kind", "format", "serving"}
    return report["serving"], out.getvalue()


def _measured(report):
    return [r for r in report["rows"] if r.get("skipped") is None]


def test_every_contender_has_a_row_per_batch(served):
    report, _ = served
    got = [(r["contender"], r["batch"]) for r in report["rows"]]
    want = [(c, b) for b in BATCHES for c in ACTOR_CONTENDERS + OPTIMIZE_CONTENDERS]
    assert sorted(got) == sorted(want) and len(got) == len(want)
    measured = {(r["contender"], r["batch"]) for r in _measured(report)}
    for b in BATCHES:  # torch.compile was not asked for; onnxruntime is installed here
        assert {(EAGER_MODULE, b), (AOTI, b), (ONNX, b), (OPTIMIZE_FUSED, b)} <= measured
    skipped = {r["contender"]: r["skipped"] for r in report["rows"] if r.get("skipped")}
    assert set(skipped) == {"torch.compile"} and skipped["torch.compile"] == "not requested"
    assert report["settings"]["requests"] == 6 and report["settings"]["optimize_requests"] == 2
    assert report["model"]["latent_dim"] == 16 and report["model"]["data_shape"] == [28, 28]
    assert report["environment"]["torch_threads"] == 1  # the CPU default
    assert report["onnx"]["intra_op_num_threads"] == 1
    assert report["export"]["aoti"]["seconds"] > 0 and report["export"]["onnx"]["seconds"] > 0
    assert report["export"]["aoti"]["max_abs_diff"] <= 1e-4


def test_latencies_are_positive_and_ordered(served):
    report, _ = served
    for r in _measured(report):
        n = report["settings"]["optimize_requests" if "optimize" in r["contender"] else "requests"]
        assert r["requests"] == n, r
        assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p99_ms"] <= r["max_ms"], r
        assert r["requests_per_second"] == pytest.approx(1e3 / r["mean_ms"])
        assert r["rows_per_second"] == pytest.approx(r["batch"] * r["requests_per_second"])
    floor = report["weight_read_floor"]
    assert floor["p50_ms"] > 0 and floor["bytes"] >= 4 * floor["parameters"]
    assert floor["parameters"] == report["model"]["parameters"]  # no encoder: all are read


def test_optimize_rows_report_the_steps_taken(served):
    report, _ = served
    for r in _measured(report):
        if r["contender"] not in OPTIMIZE_CONTENDERS:
            continue
        assert r["max_steps"] == 12
        assert 0 <= r["mean_steps_per_row"] <= r["mean_longest_row_steps"] <= 12
        assert 0 <= r["accepted"] <= 1
        assert r["backend"] == ("eager" if r["contender"] == OPTIMIZE_EAGER else "native")


def test_goal_verdicts_follow_the_reported_numbers(served):
    report, out = served
    p50 = {(r["contender"], r["batch"]): r["p50_ms"] for r in _measured(report)}
    package, optimize = report["goals"]
    ratio = p50[(AOTI, 1)] / p50[(EAGER_MODULE, 1)]
    assert package["ratio"] == pytest.approx(ratio) and package["met"] == (ratio <= 0.5)
    ratio = p50[(OPTIMIZE_EAGER, 1)] / p50[(OPTIMIZE_FUSED, 1)]
    assert optimize["ratio"] == pytest.approx(ratio) and optimize["met"] == (ratio >= 2.0)
    for g in (package, optimize):
        verdict = "met" if g["met"] else "missed"
        assert f"= {g['ratio']:.2f} ({g['comparison']} {g['target']:g}): {verdict}" in out
    assert "AOTInductor package" in out and "weight-read floor" in out


def test_goals_from_synthetic_rows():
    def row(name, p50, batch=1):
        return {"contender": name, "batch": batch, "p50_ms": p50, "skipped": None}

    rows = [row(EAGER_MODULE, 1.0), row(AOTI, 0.4), row(OPTIMIZE_FUSED, 10.0),
            row(OPTIMIZE_EAGER, 15.0), row(AOTI, 9.0, batch=64)]  # fmt: skip
    package, optimize = serving_goals(rows)
    assert (package["ratio"], package["met"]) == (pytest.approx(0.4), True)
    assert (optimize["ratio"], optimize["met"]) == (pytest.approx(1.5), False)
    rows[1] = {"contender": AOTI, "batch": 1, "skipped": "failed"}
    assert serving_goals(rows)[0]["met"] is None and serving_goals(rows)[0]["ratio"] is None


def test_synthetic_run_has_the_digits_sizes():
    sizes = digits_sizes()
    assert sizes["latent_dim"] == 16 and sizes["decoder_hidden"] == [512, 512]
    assert sizes["digit_classes"] + sizes["binary_attributes"] == 15
    assert sizes["hidden"] == [256] * 4 and sizes["embed_dim"] == 32
    assert sizes["sampling"]["steps"] == 300 and not math.isnan(sizes["sampling"]["tau_r"])


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--serving-batches", "0"], "--serving-batches"),
        (["--serving-batches", "1,x"], "--serving-batches"),
        (["--serving-requests", "0"], "--serving-requests"),
        (["--serving-optimize-requests", "0"], "--serving-optimize-requests"),
        (["--serving-threads", "0"], "--serving-threads"),
        (["--serving-run", "/nonexistent/run"], "run folder /nonexistent/run does not exist"),
    ],
)
def test_bad_options_fail_before_any_work(argv, match):
    with pytest.raises(ValueError, match=match):
        bench(["--ops", "serving", "--device", "cpu", *argv])


def test_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(ValueError, match="not a run folder"):
        bench(["--ops", "serving", "--device", "cpu", "--serving-run", str(tmp_path)])
    with pytest.raises(ValueError, match="unknown synthetic run settings"):
        make_serving_run(tmp_path / "r", widths=[3])


def test_without_onnxruntime_the_row_says_so(monkeypatch):
    assert onnx_unavailable_reason() is None  # installed here
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    assert "onnxruntime is not installed" in onnx_unavailable_reason()
