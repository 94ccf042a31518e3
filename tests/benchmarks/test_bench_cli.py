# SPDX-License-Identifier: Apache-2.0
"""``lcengine bench`` end to end on a tiny shape: the saved report, its spreads, the plot."""

import argparse
import json

import pytest

from lcengine.benchmarks import add_arguments, load_report, run_from_args


def bench(argv):
    parser = argparse.ArgumentParser(prog="lcengine bench")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def test_report_keeps_spreads_and_plot_lands_next_to_json(tmp_path, capsys):
    path = tmp_path / "run.json"
    assert (
        bench(
            [
                "--ops",
                "gaussian_kl,latent_adam",
                "--shapes",
                "64x8",
                "--device",
                "cpu",
                "--backends",
                "eager",
                "--compile-modes",
                "none",
                "--warmup",
                "0",
                "--reps",
                "3",
                "--json",
                str(path),
            ]
        )
        == 0
    )
    report = load_report(str(path))
    assert (report["kind"], report["format"]) == ("lcengine bench", 1)
    assert [r["op"] for r in report["rows"]] == ["gaussian_kl", "latent_adam"]
    for r in report["rows"]:
        s = r["spread"]
        assert s["reps"] == 3 and s["min_ms"] <= s["q1_ms"] <= r["time_ms"] <= s["q3_ms"]
        assert r["bytes_moved"] == pytest.approx(r["effective_GBps"] * r["time_ms"] * 1e6)
    assert (tmp_path / "run.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert f"plot {tmp_path / 'run.png'}" in out
    assert json.loads(path.read_text())["environment"]["device"] == "cpu"


def test_plot_path_and_no_plot(tmp_path):
    args = [
        "--ops",
        "gaussian_kl",
        "--shapes",
        "16x4",
        "--device",
        "cpu",
        "--backends",
        "eager",
        "--compile-modes",
        "none",
        "--warmup",
        "0",
        "--reps",
        "1",
    ]
    bench(args + ["--plot", str(tmp_path / "elsewhere.png")])
    assert (tmp_path / "elsewhere.png").exists()
    bench(args + ["--json", str(tmp_path / "quiet.json"), "--no-plot"])
    assert (tmp_path / "quiet.json").exists() and not (tmp_path / "quiet.png").exists()


def test_help_states_facts():
    parser = argparse.ArgumentParser(prog="lcengine bench")
    add_arguments(parser)
    text = parser.format_help()
    assert "1048576x64" in text and "65536x64" in text
    for vague in ("issue", "session", "the guide"):
        assert vague not in text
