# SPDX-License-Identifier: Apache-2.0
"""``lcengine bench --compare``: matching rows, the spread rule, and its errors."""

import argparse

import pytest

from lcengine.benchmarks import (
    add_arguments,
    compare_files,
    compare_reports,
    load_report,
    run_from_args,
)


def bench(argv):
    """``lcengine bench ARGV`` through the same parser and entry point as lcengine.cli."""
    parser = argparse.ArgumentParser(prog="lcengine bench")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


@pytest.fixture
def old_new(reports, write_report):
    r = reports
    old = r.report(
        rows=[
            r.row_op_row("gaussian_kl", 10.0, 9.5, 10.5),  # becomes slower, beyond spread
            r.row_op_row("distance_penalty", 10.0, 9.0, 11.0),  # changes within its spread
            r.row_op_row("latent_adam", 10.0, 9.8, 10.2),  # becomes faster
            r.row_op_row("constraint_loss", 5.0, 4.9, 5.1),
        ],  # only in OLD
        optimizer_rows=[r.optimizer_row("B64", 300.0, reps=1)],
    )  # one rep: not judged
    new = r.report(
        rows=[
            r.row_op_row("gaussian_kl", 15.0, 14.5, 15.5),
            r.row_op_row("distance_penalty", 10.6, 9.9, 11.3),
            r.row_op_row("latent_adam", 7.0, 6.9, 7.1),
            r.row_op_row("reparameterize", 2.0, 1.9, 2.1),
        ],  # only in NEW
        optimizer_rows=[r.optimizer_row("B64", 250.0, reps=1)],
        copy_probe=7.0,
    )
    return write_report("old.json", old), write_report("new.json", new)


def test_verdicts_follow_the_measured_spread(old_new):
    old_path, new_path = old_new
    result = compare_reports(load_report(old_path), load_report(new_path))
    changes = {
        c.label.split()[0] if "optimize" not in c.label else "optimizer": c
        for c in result["changes"]
    }
    assert changes["gaussian_kl"].verdict == "slower"
    assert changes["gaussian_kl"].ratio == pytest.approx(1.5)
    assert changes["distance_penalty"].verdict == "~"  # 6% slower, but the IQRs overlap
    assert changes["latent_adam"].verdict == "faster"
    assert changes["optimizer"].verdict == "?"  # one repetition: no spread measured
    assert result["only_old"] == ["constraint_loss 4096x64 float32 cpu native"]
    assert result["only_new"] == ["reparameterize 4096x64 float32 cpu native"]
    assert result["probes"][0] == ("copy 4096x64", 8.0, 7.0, "GB/s")


def test_cli_prints_every_row_and_exits_zero(old_new, capsys):
    old_path, new_path = old_new
    assert bench(["--compare", old_path, new_path]) == 0
    out = capsys.readouterr().out
    line = next(text for text in out.splitlines() if text.startswith("gaussian_kl"))
    # NEW/OLD, IQR OLD, IQR NEW, verdict, speedup over eager OLD -> NEW
    assert line.split()[-7:] == ["1.500", "10.0%", "6.7%", "slower", "2.00", "->", "1.33"]
    assert "only in OLD: constraint_loss" in out and "only in NEW: reparameterize" in out
    assert "1 slower, 1 faster, 1 within the spread, 1 not judged" in out
    assert "probe copy 4096x64: OLD 8.0 GB/s, NEW 7.0 GB/s" in out


def test_errors_name_the_file(reports, write_report):
    good = write_report(
        "good.json", reports.report(rows=[reports.row_op_row("gaussian_kl", 1, 1, 1)])
    )
    broken = write_report("broken.json", "{not json")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        compare_files(good, broken)
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):  # cli: exit 2
        bench(["--compare", broken, good])
    with pytest.raises(ValueError, match="missing.json: cannot read"):
        compare_files(good, str(good).replace("good", "missing"))
    pytest_benchmark = write_report("pb.json", {"machine_info": {}, "benchmarks": []})
    with pytest.raises(ValueError, match="pb.json: a pytest-benchmark report"):
        compare_files(pytest_benchmark, good)
    info = write_report("info.json", {"version": "0.1.0", "cuda_compiled": False})
    with pytest.raises(ValueError, match="info.json: not an lcengine bench report"):
        compare_files(good, info)
    bad_row = write_report("bad_row.json", {"kind": "lcengine bench", "rows": [{"op": "x"}]})
    with pytest.raises(ValueError, match=r"bad_row.json: rows\[0\] is not a benchmark row"):
        compare_files(good, bad_row)
    other = write_report("other.json", {"kind": "something else", "rows": []})
    with pytest.raises(ValueError, match="other.json: a report of kind 'something else'"):
        compare_files(other, good)


def test_reports_of_different_kinds(reports, write_report):
    rows_only = write_report(
        "rows.json", reports.report(rows=[reports.row_op_row("gaussian_kl", 1, 1, 1)])
    )
    optimizer_only = write_report(
        "opt.json", reports.report(optimizer_rows=[reports.optimizer_row("B64", 300.0)])
    )
    with pytest.raises(
        ValueError,
        match="different kinds.*rows.json times row ops.*opt.json times optimize_latents",
    ):
        compare_files(rows_only, optimizer_only)


def test_reports_without_spread_are_read_but_not_judged(reports, write_report):
    legacy = reports.report(rows=[reports.row_op_row("gaussian_kl", 1.0, 1.0, 1.0)])
    del legacy["kind"], legacy["format"], legacy["rows"][0]["spread"]
    old = write_report("legacy.json", legacy)
    new = write_report(
        "new.json", reports.report(rows=[reports.row_op_row("gaussian_kl", 3.0, 2.9, 3.1)])
    )
    assert (
        "gaussian_kl 4096x64 float32 cpu native      1.000      3.000    3.000      n/a"
        in compare_files(old, new)
    )
    result = compare_reports(load_report(old), load_report(new))
    assert [c.verdict for c in result["changes"]] == ["?"]
