# SPDX-License-Identifier: Apache-2.0
"""``lcengine bench``: the run its arguments select, the printed tables (the arguments
themselves, torch-free, are in :mod:`.cli_args`)."""

from __future__ import annotations

import argparse
import json
import os
import warnings

import torch

from ..backend import unavailable_reason
from .cli_args import DEFAULT_SHAPES, FIT_OP, JOB_OP, LARGE_SHAPES, SERVING_OP, add_arguments
from .compare import REPORT_FORMAT, REPORT_KIND, compare_files
from .optimizer import OPTIMIZER_CASES, OPTIMIZER_OP, default_optimizer_cases, run_optimizer
from .row_ops import CASES, DTYPES, parse_shape, run


def format_table(report: dict) -> str:
    """The row-op table of a :func:`run` report, with the copy probe and environment below."""
    header = (
        f"{'op':<17} {'shape':<13} {'dtype':<8} {'backend':<7} {'time ms':>9} "
        f"{'GB/s':>7} {'of copy':>8} {'x eager':>8} {'x compile':>10} {'x best':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in report["rows"]:
        vs_compile = (
            f"{r['speedup_vs_compile']:>10.2f}"
            if r["speedup_vs_compile"] is not None
            else f"{'n/a':>10}"
        )
        lines.append(
            f"{r['op']:<17} {r['shape']:<13} {r['dtype']:<8} {r['backend']:<7} "
            f"{r['time_ms']:>9.3f} {r['effective_GBps']:>7.2f} "
            f"{r['fraction_of_copy']:>7.0%} {r['speedup_vs_eager']:>8.2f} {vs_compile} "
            f"{r['speedup_vs_best_of_eager_and_compile']:>7.2f}"
        )
    env = report["environment"]
    probes = ", ".join(f"{k}: {v:.1f} GB/s" for k, v in report["copy_probe_GBps"].items())
    device = env.get("device_name", env["processor"])
    lines.append(
        f"copy probe {probes}; torch {env['torch']}, {device}, {env['torch_threads']} "
        f"torch threads, {env['openmp_threads']} OpenMP threads"
    )
    errors = {(r["op"], k): v for r in report["rows"] for k, v in r["compile_errors"].items()}
    for (op, mode), err in errors.items():
        lines.append(f"note: {mode} failed for {op}: {err}")
    return "\n".join(lines)


def format_optimizer_table(report: dict) -> str:
    """The FLOP-based table of a :func:`run_optimizer` report."""
    header = (
        f"{'optimize_latents case':<38} {'backend':<12} {'ms/step':>9} {'eager':>9} "
        f"{'GFLOP/s':>8} {'of GEMM':>8} {'x eager':>8} {'x compile':>10} "
        f"{'mem/eager':>9} {'converged':>10}"
    )
    lines = [header, "-" * len(header)]
    for r in report["rows"]:
        vs_compile = (
            f"{r['speedup_vs_compile']:>10.2f}"
            if r["speedup_vs_compile"] is not None
            else f"{'n/a':>10}"
        )
        gflops = "n/a" if r["GFLOPs"] is None else f"{r['GFLOPs']:.1f}"
        frac = "n/a" if r["GFLOPs"] is None else f"{r['fraction_of_gemm_probe']:.0%}"
        mem = "n/a" if r.get("peak_vs_eager") is None else f"{r['peak_vs_eager']:.2f}"
        eager = "OOM" if r["eager_ms_per_step"] is None else f"{r['eager_ms_per_step']:.3f}"
        vs_eager = "n/a" if r["speedup_vs_eager"] is None else f"{r['speedup_vs_eager']:.2f}"
        lines.append(
            f"{r['case']:<38} {r['backend']:<12} {r['ms_per_step']:>9.3f} "
            f"{eager:>9} {gflops:>8} {frac:>8} {vs_eager:>8} {vs_compile} {mem:>9} "
            f"{r['converged_rows']:>4}/{r['rows']:<5}"
        )
    env = report["environment"]
    eager = report["rows"][0]["eager"] if report["rows"] else "float32"
    lines.append(
        f"eager: the autograd loop ({eager}); x compile: best torch.compile mode of "
        "lcengine.reference.dense_step_ref, looped over every row every step"
    )
    lines.append(
        f"GEMM probe ({report['gemm_probe']}) {report['gemm_probe_GFLOPs']:.1f} "
        f"GFLOP/s; torch {env['torch']}, {env['processor']}, {env['torch_threads']} "
        f"torch threads, {env['openmp_threads']} OpenMP threads"
    )
    for r in report["rows"]:
        if r["compile_error"]:
            lines.append(f"note: torch.compile failed for {r['case']}: {r['compile_error']}")
    oom = sorted({(r["case"], label) for r in report["rows"] for label in r["out_of_memory"]})
    for case, label in oom:
        lines.append(f"note: {label} ran out of GPU memory on {case} (not timed)")
    return "\n".join(lines)


def _plot(report: dict, path: str) -> None:
    try:
        from .plots import plot_report
    except ImportError as exc:  # matplotlib missing: the numbers above still stand
        print(f"note: no plot ({exc})")
        return
    plot_report(report, path)
    print(f"plot {path}")


def _positive_ints(option: str, text: str) -> list[int]:
    try:
        values = [int(p) for p in str(text).split(",") if p.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ValueError(f"{option}: comma-separated positive integers, got {text!r}")
    return values


def _serving_options(args: argparse.Namespace) -> dict:
    """The checked ``--serving-*`` options (before anything is fitted or exported)."""
    run = getattr(args, "serving_run", None)
    if run is not None and not os.path.isdir(run):
        raise ValueError(f"--serving-run: run folder {run} does not exist")
    if run is not None and not os.path.isfile(os.path.join(run, "run.json")):
        raise ValueError(f"--serving-run: {run} is not a run folder (no run.json)")
    out = {
        "run": run,
        "batches": _positive_ints("--serving-batches", getattr(args, "serving_batches", "1,64")),
        "requests": getattr(args, "serving_requests", 1000),
        "optimize_requests": getattr(args, "serving_optimize_requests", 30),
        "compile": bool(getattr(args, "serving_compile", False)),
        "threads": getattr(args, "serving_threads", None),
    }
    for option, key in (
        ("--serving-requests", "requests"),
        ("--serving-optimize-requests", "optimize_requests"),
    ):
        if out[key] < 1:
            raise ValueError(f"{option} must be at least 1, got {out[key]}")
    if out["threads"] is not None and out["threads"] < 1:
        raise ValueError(f"--serving-threads must be at least 1, got {out['threads']}")
    return out


def run_from_args(args: argparse.Namespace) -> int:
    """Runs ``lcengine bench`` as parsed by :func:`add_arguments`; returns the exit status."""
    if getattr(args, "compare", None):
        print(compare_files(*args.compare))
        return 0
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but no CUDA device is available")
    names = [n.strip() for n in args.ops.split(",") if n.strip()]
    extra = (OPTIMIZER_OP, FIT_OP, JOB_OP, SERVING_OP)
    unknown = [n for n in names if n not in CASES and n not in extra]
    if unknown or not names:
        raise ValueError(f"--ops: unknown op(s) {unknown}; choose from {list(CASES) + list(extra)}")
    job_processes = []
    if JOB_OP in names:
        names.remove(JOB_OP)
        try:
            job_processes = [int(p) for p in args.job_processes.split(",") if p.strip()]
        except ValueError:
            job_processes = []
        if not job_processes or min(job_processes) < 1:
            raise ValueError(f"--job-processes: positive integers, got {args.job_processes!r}")
        if args.job_rows < 1:
            raise ValueError(f"--job-rows must be at least 1, got {args.job_rows}")
    serving = None
    if SERVING_OP in names:
        names.remove(SERVING_OP)
        serving = _serving_options(args)
    fit_cases = []
    if FIT_OP in names:
        from .fit import FIT_CASES

        names.remove(FIT_OP)
        fit_cases = (
            [c.strip() for c in args.fit_cases.split(",") if c.strip()]
            if getattr(args, "fit_cases", None)
            else list(FIT_CASES)
        )
        bad = [c for c in fit_cases if c not in FIT_CASES]
        if bad or not fit_cases:
            raise ValueError(f"--fit-cases: unknown case(s) {bad}; choose from {list(FIT_CASES)}")
        fit_threads = None
        if getattr(args, "fit_threads", None):
            try:
                fit_threads = [int(t) for t in args.fit_threads.split(",") if t.strip()]
            except ValueError:
                fit_threads = []
            if not fit_threads or min(fit_threads) < 1:
                raise ValueError(f"--fit-threads: positive integers, got {args.fit_threads!r}")
    optimizer_cases = []
    if OPTIMIZER_OP in names:
        names.remove(OPTIMIZER_OP)
        optimizer_cases = (
            [c.strip() for c in args.optimizer_cases.split(",") if c.strip()]
            if args.optimizer_cases
            else default_optimizer_cases(device.type)
        )
        bad = [c for c in optimizer_cases if c not in OPTIMIZER_CASES]
        if bad or not optimizer_cases:
            raise ValueError(
                f"--optimizer-cases: unknown case(s) {bad}; choose from {list(OPTIMIZER_CASES)}"
            )
        weight_names = (
            args.weight_dtypes or ("float32" if device.type == "cpu" else "float32,bfloat16")
        ).split(",")
        bad = [w for w in weight_names if w.strip() not in ("float32", "bfloat16")]
        if bad:
            raise ValueError(f"--weight-dtypes: unknown {bad}; choose float32, bfloat16")
        weight_dtypes = [DTYPES[w.strip()] for w in weight_names]
    if args.shapes:
        shapes = [parse_shape(s) for s in args.shapes.split(",")]
    else:
        table = LARGE_SHAPES if args.large else DEFAULT_SHAPES
        shapes = [parse_shape(s) for s in table[device.type]]
    if args.compile_modes is None:
        modes = ["default"] if device.type == "cpu" else ["default", "max-autotune-no-cudagraphs"]
    elif args.compile_modes.strip().lower() == "none":
        modes = []
    else:
        modes = [m.strip() for m in args.compile_modes.split(",") if m.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b != "auto" and unavailable_reason(b, device):
            raise ValueError(
                f"--backends: {b} is not available on {device.type}: "
                f"{unavailable_reason(b, device)}"
            )
    if args.warmup < 0 or args.reps < 1:
        raise ValueError("--warmup must be >= 0 and --reps >= 1")
    plot_path = None
    if not args.no_plot:
        plot_path = args.plot_path or (
            os.path.splitext(args.json_path)[0] + ".png" if args.json_path else None
        )
    report: dict = {"kind": REPORT_KIND, "format": REPORT_FORMAT}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if names:
            report.update(
                run(
                    names,
                    shapes,
                    DTYPES[args.dtype],
                    device,
                    warmup=args.warmup,
                    reps=args.reps,
                    compile_modes=modes,
                    backends=backends,
                )
            )
            print(format_table(report))
        if optimizer_cases:
            opt = run_optimizer(
                optimizer_cases,
                device=device,
                warmup=min(args.warmup, 1),
                reps=min(args.reps, 5),
                compile_modes=modes,
                backends=backends,
                weight_dtypes=weight_dtypes,
            )
            print(format_optimizer_table(opt))
            report["optimizer"] = opt
        if fit_cases:
            from .fit import format_fit_table, run_fit

            fit = run_fit(
                fit_cases,
                device=device,
                warmup=args.warmup,
                reps=args.reps,
                compile_modes=modes[:1],
                threads=fit_threads,
            )
            print(format_fit_table(fit))
            report["fit"] = fit
        if job_processes:
            from .job import format_job_table, run_job_bench

            job = run_job_bench(rows=args.job_rows, processes=job_processes, device=device)
            print(format_job_table(job))
            report["optimize_job"] = job
        if serving is not None:
            from .serving import format_serving_table, run_serving_bench

            threads = torch.get_num_threads()
            try:  # on CPU one thread unless told (see --serving-threads)
                torch.set_num_threads(
                    serving["threads"] or (1 if device.type == "cpu" else threads)
                )
                serving_report = run_serving_bench(
                    run=serving["run"],
                    batches=serving["batches"],
                    device=device,
                    requests=serving["requests"],
                    optimize_requests=serving["optimize_requests"],
                    compile_module=serving["compile"],
                )
            finally:
                torch.set_num_threads(threads)
            print(format_serving_table(serving_report))
            report["serving"] = serving_report
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(report, fh, indent=2)
        print(f"saved {args.json_path}")
    if plot_path and any(k in report for k in ("rows", "optimizer", "serving")):  # no fit plot
        _plot(report, plot_path)
    return 0


__all__ = ["add_arguments", "format_optimizer_table", "format_table", "run_from_args"]
