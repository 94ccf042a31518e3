# SPDX-License-Identifier: Apache-2.0
"""Synthetic ``lcengine bench`` reports for the compare and plot tests (no timing involved)."""

import json

import pytest


def _spread(median_ms, q1_ms, q3_ms, reps=5):
    return {
        "q1_ms": q1_ms,
        "q3_ms": q3_ms,
        "min_ms": q1_ms * 0.95,
        "max_ms": q3_ms * 1.05,
        "reps": reps,
        "iqr_rel": (q3_ms - q1_ms) / median_ms,
    }


def row_op_row(
    op,
    time_ms,
    q1_ms,
    q3_ms,
    *,
    backend="native",
    shape="4096x64",
    reps=5,
    eager_ms=20.0,
    compile_ms=10.0,
):
    """A row-op row as ``lcengine.benchmarks.run`` writes it (the fields compare and plots
    read, with consistent bandwidths)."""
    nbytes = 3 * 4096 * 64 * 4
    return {
        "op": op,
        "shape": shape,
        "dtype": "float32",
        "device": "cpu",
        "backend": backend,
        "time_ms": time_ms,
        "spread": _spread(time_ms, q1_ms, q3_ms, reps),
        "eager_ms": eager_ms,
        "best_compile_ms": compile_ms,
        "compile_ms": {"compile[default]": compile_ms},
        "compile_errors": {},
        "bytes_moved": nbytes,
        "effective_GBps": nbytes / time_ms / 1e6,
        "copy_probe_GBps": 8.0,
        "fraction_of_copy": nbytes / time_ms / 1e6 / 8.0,
        "speedup_vs_eager": eager_ms / time_ms,
        "speedup_vs_compile": compile_ms / time_ms,
        "speedup_vs_best_of_eager_and_compile": min(eager_ms, compile_ms) / time_ms,
    }


def optimizer_row(case, time_ms, *, reps=1, gflops=True):
    flops = 4.0e9
    return {
        "op": "optimize_latents",
        "case": case,
        "device": "cpu",
        "rows": 64,
        "dim": 64,
        "hidden": [256] * 4,
        "activation": "relu",
        "steps_per_call": 300,
        "backend": "native",
        "eager": "float32",
        "best_compile_mode": "compile[default]",
        "time_ms": time_ms,
        "ms_per_step": time_ms / 300,
        "spread": _spread(time_ms, time_ms, time_ms, reps),
        "eager_ms": 4 * time_ms,
        "compile_ms": 2 * time_ms,
        "flops_per_call": flops if gflops else None,
        "GFLOPs": flops / time_ms / 1e6 if gflops else None,
        "gemm_probe_GFLOPs": 100.0,
        "gemm_probe": "fp32 torch.mm 2048^3",
        "compile_error": None,
        "out_of_memory": [],
        "converged_rows": 0,
    }


def report(rows=None, optimizer_rows=None, copy_probe=8.0):
    env = {
        "torch": "2.13.0",
        "device": "cpu",
        "cpu_name": "Test CPU",
        "torch_threads": 2,
        "openmp_threads": 2,
        "processor": "x86_64",
    }
    out = {"kind": "lcengine bench", "format": 1}
    if rows is not None:
        out.update(
            {
                "environment": env,
                "copy_probe_GBps": {"4096x64": copy_probe},
                "settings": {"warmup": 1, "reps": 5},
                "rows": rows,
            }
        )
    if optimizer_rows is not None:
        out["optimizer"] = {
            "environment": env,
            "gemm_probe_GFLOPs": 100.0,
            "gemm_probe": "fp32 torch.mm 2048^3",
            "settings": {"warmup": 1, "reps": 1},
            "rows": optimizer_rows,
        }
    return out


@pytest.fixture
def write_report(tmp_path):
    """``write_report(name, data)`` saves ``data`` as JSON under tmp_path; returns the path."""

    def write(name, data):
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return str(path)

    return write


@pytest.fixture
def reports():
    """The builders above, as a namespace."""

    class Reports:
        pass

    ns = Reports()
    ns.row_op_row, ns.optimizer_row, ns.report = row_op_row, optimizer_row, report
    return ns
