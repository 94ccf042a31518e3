# SPDX-License-Identifier: Apache-2.0
"""``lcengine bench --ops optimize_job``: rows/s of the batch job at 1 and 2 processes, its
parallel efficiency and the check that both give the same rows."""

import argparse
import json

import pytest

from lcengine.benchmarks import add_arguments, run_from_args
from lcengine.benchmarks.job import format_job_table, job_command, run_job_bench


def bench(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def test_job_bench_measures_one_and_two_processes():
    report = run_job_bench(rows=600, processes=(1, 2), chunk_rows=100, steps=5, log=lambda s: 0)
    one, two = report["cases"]
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["efficiency"] == pytest.approx(1.0)
    assert two["efficiency"] == pytest.approx(two["rows_per_second"] / (2 * one["rows_per_second"]))
    assert one["rows_per_second"] > 0 and two["wall_seconds"] > 0
    assert one["same_rows"] and two["same_rows"]  # the job's contract, checked in every run
    assert one["mean_steps"] == 5.0  # compute-bound: no row stops early
    assert "torch.distributed.run" in two["command"] and "--nproc-per-node 2" in two["command"]
    table = format_job_table(report)
    assert "efficiency" in table and "torchrun --nproc-per-node <GPUs>" in table
    with pytest.raises(ValueError, match="process counts"):
        run_job_bench(rows=10, processes=(0,))


def test_job_command_lines():
    one = job_command(1, "R", "T.npy", "O", "cpu", 64)
    assert one[1:4] == ["-m", "lcengine", "optimize"] and "--threads" in one
    two = job_command(2, "R", "T.npy", "O", "cuda", 64, port=1234)
    assert two[two.index("--") - 2 :][:3] == ["-m", "lcengine", "--"]
    assert "--master-port" in two and "cuda" in two


def test_cli_runs_the_job_bench(tmp_path, capsys):
    path = tmp_path / "job.json"
    argv = ["--ops", "optimize_job", "--job-rows", "200", "--job-processes", "1"]
    assert bench(argv + ["--device", "cpu", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["optimize_job"]["cases"][0]["processes"] == 1
    assert "optimize_job: 200 rows" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--job-processes"):
        bench(["--ops", "optimize_job", "--job-processes", "0", "--device", "cpu"])
    with pytest.raises(ValueError, match="--job-rows"):
        bench(["--ops", "optimize_job", "--job-rows", "0", "--device", "cpu"])
