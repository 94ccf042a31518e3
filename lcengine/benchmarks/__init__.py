# SPDX-License-Identifier: Apache-2.0
"""The code behind ``lcengine bench`` and the pytest-benchmark suites in ``bench/``.

Every figure is a ratio measured side by side in one process: lcengine against eager PyTorch
and against ``torch.compile`` of the same eager code (best of the modes tried), same inputs,
same dtype, contenders interleaved round-robin, median of many repetitions after warm-up, with
the spread of the repetitions kept in the report. Memory-bound rows also report effective
bandwidth against a copy probe; optimizer rows report FLOP/s against a GEMM probe, both
measured in the same run.

Modules:
    timing: Timer, interleaved measurement (medians and spreads), copy and GEMM probes,
        environment capture.
    row_ops: the memory-bound row ops (:data:`CASES`) and :func:`run`.
    optimizer: whole ``optimize_latents`` calls (:data:`OPTIMIZER_CASES`), the compiled
        contender built from ``lcengine.reference.dense_step_ref``, :func:`run_optimizer`.
    plots: the PNG of a report. compare: two saved reports side by side.
    cli: ``lcengine bench``'s arguments, run and tables.

``bench/`` (pytest-benchmark) times the same cases through fixtures in ``bench/conftest.py``.
"""

from .cli import add_arguments, format_optimizer_table, format_table, run_from_args
from .compare import REPORT_FORMAT, REPORT_KIND, compare_files, compare_reports, load_report
from .optimizer import (
    OPTIMIZER_CASES,
    OPTIMIZER_OP,
    OptimizerCase,
    compiled_dense_loop,
    default_optimizer_cases,
    dense_loop,
    optimizer_flops_per_step,
    optimizer_inputs,
    run_optimizer,
)
from .row_ops import (
    CASES,
    DEFAULT_SHAPES,
    DTYPES,
    LARGE_SHAPES,
    Case,
    parse_shape,
    run,
    timed_call,
)
from .timing import (
    GEMM_PROBES,
    Stats,
    Timer,
    copy_probe,
    environment,
    gemm_probe,
    measure,
    measure_stats,
    summarize,
)

__all__ = [
    "CASES",
    "Case",
    "DEFAULT_SHAPES",
    "DTYPES",
    "GEMM_PROBES",
    "LARGE_SHAPES",
    "OPTIMIZER_CASES",
    "OPTIMIZER_OP",
    "OptimizerCase",
    "REPORT_FORMAT",
    "REPORT_KIND",
    "Stats",
    "Timer",
    "add_arguments",
    "compare_files",
    "compare_reports",
    "compiled_dense_loop",
    "copy_probe",
    "default_optimizer_cases",
    "dense_loop",
    "environment",
    "format_optimizer_table",
    "format_table",
    "gemm_probe",
    "load_report",
    "measure",
    "measure_stats",
    "optimizer_flops_per_step",
    "optimizer_inputs",
    "parse_shape",
    "run",
    "run_from_args",
    "run_optimizer",
    "summarize",
    "timed_call",
]
