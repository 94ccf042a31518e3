# SPDX-License-Identifier: Apache-2.0
"""``lcengine bench --ops fit``: the report's structure, ratios from the measured medians,
refusals reported (not faked), the CLI wiring."""

import argparse
import json

import pytest
import torch

from lcengine.benchmarks import add_arguments, cli_args, run_from_args
from lcengine.benchmarks.fit import (
    FIT_CASES,
    FitCase,
    fit_inputs,
    fit_rows,
    format_fit_table,
    run_fit,
    step_flops,
)
from lcengine.benchmarks.timing import summarize

TINY = FitCase("tiny", 6, 4, (8, 8), attributes=3, embed_dim=2, attribute_batch=6)


def bench(argv):
    parser = argparse.ArgumentParser(prog="lcengine bench")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def test_torch_free_names_match_the_cases():
    assert cli_args.FIT_CASE_NAMES == tuple(FIT_CASES)
    assert cli_args.FIT_STEPS == ("realism", "attribute", "actor")


def _timed(rows):
    return [r for r in rows if r["status"] == "timed"]


def test_report_rows_and_ratios_come_from_the_measured_times():
    report = run_fit([TINY], warmup=0, reps=3, compile_modes=(), progress=False)
    assert set(report) == {
        "environment",
        "settings",
        "cases",
        "rows",
        "gemm_probe_GFLOPs",
        "gemm_probe",
    }
    assert report["cases"][0]["case"] == "tiny" and report["cases"][0]["reps"] == 3
    probe = report["gemm_probe_GFLOPs"][str(torch.get_num_threads())]
    assert probe > 0 and report["gemm_probe"].startswith("fp32 torch.mm")
    rows = report["rows"]
    assert [(r["step"], r["contender"]) for r in rows] == [
        (s, c)
        for s in ("realism", "attribute", "actor")
        for c in ("eager", "eager+fused_adam", "hand")
    ]
    for r in rows:
        assert r["op"] == "fit" and r["case"] == "tiny" and r["status"] == "timed"
        assert r["threads"] == torch.get_num_threads()
        s = r["spread"]
        assert s["reps"] == 3 and s["min_ms"] <= s["q1_ms"] <= r["time_ms"] <= s["q3_ms"]
        assert r["steps_per_s"] == pytest.approx(1e3 / r["time_ms"])
        eager = next(e for e in rows if e["step"] == r["step"] and e["contender"] == "eager")
        assert r["eager_ms"] == eager["time_ms"]
        assert r["speedup_vs_eager"] == pytest.approx(eager["time_ms"] / r["time_ms"])
        assert r["speedup_vs_compile"] is None and r["best_compile"] is None
        assert r["GFLOPs"] == pytest.approx(r["gflop_per_step"] / (r["time_ms"] / 1e3))
        assert r["fraction_of_gemm_probe"] == pytest.approx(r["GFLOPs"] / probe)
    json.dumps(report)
    table = format_fit_table(report)
    assert "tiny" in table and "hand" in table and "steps/s" in table


def test_step_flops_count_the_step_matmuls():
    """The realism step at TINY (B=6, D=4, A=3, E=2, hidden 8x8): forward and backward over
    the 4B rows, the penalty's second pass over B rows and the weight GEMMs, counted by hand."""
    x = fit_inputs(TINY)
    b, widths = 6, [4 + 2, 8, 8, 1]
    f = sum(a * c for a, c in zip(widths[:-1], widths[1:]))  # MACs of one row's forward
    mac = (
        4 * b * 3 * 2  # embedding forward (A x E per row)
        + 4 * b * f  # forward
        + 4 * b * (f - widths[0] * widths[1])  # backward deltas of layers 1..L
        + 4 * b * widths[0] * widths[1]  # the input gradient
        + b * (f - widths[-2] * widths[-1])  # the penalty's pass over the B rows
        + 4 * b * f  # weight gradients over 4B rows
        + 3 * b * 2 * 3  # embedding gradient
    )
    assert step_flops("realism", x) == 2 * mac


def test_fit_rows_pick_the_fastest_compile_and_keep_refusals():
    stats = {
        "eager": summarize([0.010, 0.012, 0.011]),
        "compile[default]+trace_autograd_ops": summarize([0.008]),
        "compile[max-autotune]": summarize([0.009]),
        "hand": summarize([0.004, 0.005]),
    }
    rows = fit_rows("c", "realism", stats, {"compile[default]": "RuntimeError: no"})
    by = {r["contender"]: r for r in rows}
    assert by["hand"]["best_compile"] == "compile[default]+trace_autograd_ops"
    assert by["hand"]["speedup_vs_eager"] == pytest.approx(0.011 / 0.0045)
    assert by["hand"]["speedup_vs_compile"] == pytest.approx(0.008 / 0.0045)
    assert by["eager"]["speedup_vs_eager"] == pytest.approx(1.0)
    refused = by["compile[default]"]
    assert refused["status"] == "refused" and refused["time_ms"] is None
    assert refused["speedup_vs_eager"] is None and refused["error"] == "RuntimeError: no"


def test_compile_of_the_double_backward_is_reported_not_faked():
    """torch.compile of the autograd realism step either times or says why not; the
    hand-derived step compiles."""
    report = run_fit(
        [TINY], steps=["realism"], warmup=0, reps=1, compile_modes=("default",), progress=False
    )
    by = {r["contender"]: r for r in report["rows"]}
    assert by["hand+compile[default]"]["status"] == "timed"
    plain = by["compile[default]"]
    if plain["status"] == "refused":
        assert plain["error"] and "\n" not in plain["error"] and plain["time_ms"] is None
        assert "compile[default]+trace_autograd_ops" in by
        assert "note: compile[default] refused tiny realism" in format_fit_table(report)
    compiled = [r for r in _timed(report["rows"]) if r["contender"].startswith("compile[")]
    best = min(compiled, key=lambda r: r["time_ms"]) if compiled else None
    hand = by["hand"]
    if best is None:
        assert hand["speedup_vs_compile"] is None
    else:
        assert hand["speedup_vs_compile"] == pytest.approx(best["time_ms"] / hand["time_ms"])


def test_cli_runs_fit_and_saves_its_section(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(FIT_CASES, "tiny", TINY)
    path = tmp_path / "fit.json"
    argv = ["--ops", "fit", "--fit-cases", "tiny", "--device", "cpu"]
    argv += ["--compile-modes", "none", "--warmup", "0", "--reps", "1", "--json", str(path)]
    argv += ["--fit-threads", "1"]
    assert bench(argv) == 0
    report = json.loads(path.read_text())
    assert "rows" not in report and "optimizer" not in report
    fit = report["fit"]
    assert {r["case"] for r in fit["rows"]} == {"tiny"}
    assert {r["contender"] for r in fit["rows"]} == {"eager", "eager+fused_adam", "hand"}
    assert {r["threads"] for r in fit["rows"]} == {1} and fit["cases"][0]["threads"] == [1]
    assert not (tmp_path / "fit.png").exists()  # no plot for the fit table
    assert "tiny" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--fit-cases"):
        bench(["--ops", "fit", "--fit-cases", "nope", "--device", "cpu"])


def test_bf16_autocast_contender_on_cases_that_ask_for_it():
    import dataclasses

    case = dataclasses.replace(TINY, cpu_autocast=True)
    report = run_fit(
        [case], steps=("attribute",), warmup=0, reps=2, compile_modes=(), progress=False
    )
    by = {r["contender"]: r for r in report["rows"]}
    assert set(by) == {"eager", "eager+fused_adam", "hand", "hand+bf16_autocast"}
    assert by["hand+bf16_autocast"]["status"] == "timed" and by["hand+bf16_autocast"]["time_ms"] > 0
