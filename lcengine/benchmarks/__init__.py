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
    fit: the trainer's steps per second (:data:`FIT_CASES`): autograd, ``torch.compile``, the
        hand-derived steps of :mod:`lcengine.method.steps`, :func:`run_fit`.
    optimizer: whole ``optimize_latents`` calls (:data:`OPTIMIZER_CASES`), the compiled
        contender built from ``lcengine.reference.dense_step_ref``, :func:`run_optimizer`.
    job: the batch job's scaling over processes (``--ops optimize_job``).
    serving: per-request latency of a run's sampler, its AOTInductor and ONNX exports and
        its optimize mode (``--ops serving``), :func:`run_serving_bench`.
    plots: the PNG of a report. compare: two saved reports side by side.
    cli: ``lcengine bench``'s run and tables; cli_args: its arguments (torch-free).

``bench/`` (pytest-benchmark) times the same cases through fixtures in ``bench/conftest.py``.

The names are imported on first access (PEP 562): ``lcengine --help`` builds ``lcengine bench``'s
parser from :mod:`.cli_args` without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lcengine._lazy import lazy_package

if TYPE_CHECKING:  # the real imports, for type checkers and IDEs
    from .cli import format_optimizer_table, format_table, run_from_args
    from .cli_args import (
        DEFAULT_SHAPES,
        FIT_CASE_NAMES,
        FIT_OP,
        FIT_STEPS,
        LARGE_SHAPES,
        OPTIMIZER_OP,
        add_arguments,
    )
    from .compare import REPORT_FORMAT, REPORT_KIND, compare_files, compare_reports, load_report
    from .fit import FIT_CASES, FitCase, fit_rows, format_fit_table, run_fit
    from .optimizer import (
        OPTIMIZER_CASES,
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
        DTYPES,
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
    "FIT_CASES",
    "FIT_CASE_NAMES",
    "FIT_OP",
    "FIT_STEPS",
    "FitCase",
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
    "fit_rows",
    "format_fit_table",
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
    "run_fit",
    "run_from_args",
    "run_optimizer",
    "summarize",
    "timed_call",
]

_EXPORTS = {
    "add_arguments": ".cli_args",
    "format_optimizer_table": ".cli",
    "format_table": ".cli",
    "run_from_args": ".cli",
    "REPORT_FORMAT": ".compare",
    "REPORT_KIND": ".compare",
    "compare_files": ".compare",
    "compare_reports": ".compare",
    "load_report": ".compare",
    "FIT_CASES": ".fit",
    "FIT_CASE_NAMES": ".cli_args",
    "FIT_OP": ".cli_args",
    "FIT_STEPS": ".cli_args",
    "FitCase": ".fit",
    "fit_rows": ".fit",
    "format_fit_table": ".fit",
    "run_fit": ".fit",
    "OPTIMIZER_CASES": ".optimizer",
    "OPTIMIZER_OP": ".cli_args",
    "OptimizerCase": ".optimizer",
    "compiled_dense_loop": ".optimizer",
    "default_optimizer_cases": ".optimizer",
    "dense_loop": ".optimizer",
    "optimizer_flops_per_step": ".optimizer",
    "optimizer_inputs": ".optimizer",
    "run_optimizer": ".optimizer",
    "CASES": ".row_ops",
    "DEFAULT_SHAPES": ".cli_args",
    "DTYPES": ".row_ops",
    "LARGE_SHAPES": ".cli_args",
    "Case": ".row_ops",
    "parse_shape": ".row_ops",
    "run": ".row_ops",
    "timed_call": ".row_ops",
    "GEMM_PROBES": ".timing",
    "Stats": ".timing",
    "Timer": ".timing",
    "copy_probe": ".timing",
    "environment": ".timing",
    "gemm_probe": ".timing",
    "measure": ".timing",
    "measure_stats": ".timing",
    "summarize": ".timing",
}
_SUBMODULES = (
    "cli",
    "cli_args",
    "compare",
    "fit",
    "job",
    "optimizer",
    "plots",
    "row_ops",
    "serving",
    "timing",
)
__getattr__, __dir__ = lazy_package(__name__, globals(), _EXPORTS, _SUBMODULES)
