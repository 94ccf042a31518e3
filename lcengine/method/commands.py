# SPDX-License-Identifier: Apache-2.0
"""The ``lcengine`` subcommands on run folders: fit, sample, transform, optimize, export.

They work on any run folder (:mod:`lcengine.method.run`): the model, the inputs to transform and
the independent measurement of outputs come from the application recorded in ``run.json``.
``lcengine/cli.py`` calls :func:`add_commands` on its subparsers, naming the application that
``fit`` uses for a new run; each command sets ``func``. Errors are raised as
ValueError/RuntimeError with a message naming the problem; the CLI turns them into
``lcengine <cmd>: error: ...`` and exit status 2.

``fit`` holds the run folder's writer lock (:func:`lcengine.method.store.writer_lock`) while it
runs, so a second writer is refused. The first SIGTERM or Ctrl-C stops training at the next
step boundary; the checkpoint is saved and ``fit`` exits with status ``128 + signal``
(143, 130); a second Ctrl-C aborts at once. ``sample``, ``transform`` and ``export`` only read
the run (checkpoint commits are atomic) and take no lock.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from lcengine._lazy import LazyModule

from .methods import AUTOCAST_MODES, METHODS, OPTIMIZER_STARTS
from .signals import StopOnSignals

if TYPE_CHECKING:
    import numpy as np
else:  # imported on first use, so that building the parsers loads no numpy
    np = LazyModule("numpy")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def nonneg_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return v


def nonneg_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def set_threads(threads: int) -> None:
    """torch intra-op threads (0: leave torch's default)."""
    import torch

    if threads:
        torch.set_num_threads(threads)


def add_device_argument(parser: Any) -> None:
    """Adds ``--device`` (checked when the command runs, so the parser loads no torch)."""
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the critics, the actor and the latents live: cpu (default), cuda, cuda:N "
        "or auto (cuda when available)",
    )


def command_device(args: argparse.Namespace) -> Any:
    """``args.device`` as a ``torch.device`` (ValueError naming ``--device``)."""
    from .data import resolve_device

    return resolve_device(args.device, "--device")


def add_commands(subparsers: Any, *, default_application: str) -> None:
    """Registers ``fit``, ``sample``, ``transform``, ``optimize`` and ``export`` on an
    argparse subparsers object (the result of ``parser.add_subparsers()``), each with ``func``
    set.

    Args:
        subparsers: where to add the commands.
        default_application: import path of the application that ``fit`` uses to create a new
            run when ``--application`` is not given.
    """
    fit = subparsers.add_parser(
        "fit",
        help="create a run folder (model, critics, actor) or continue training one",
        description="Without a run in --run: the application trains its model and the "
        "constraints into it (no evaluation). With one: continues training from "
        "the saved step counts up to the requested totals.",
    )
    fit.add_argument("--run", required=True, help="run folder")
    fit.add_argument(
        "--application",
        default=default_application,
        help="import path 'module:attribute' of the application that creates a "
        f"new run (default: {default_application})",
    )
    fit.add_argument("--fast", action="store_true", help="tiny preset (new runs only)")
    fit.add_argument("--seed", type=nonneg_int, default=0, help="seed (new runs only)")
    fit.add_argument(
        "--attribute-steps", type=nonneg_int, default=None, help="total attribute-critic updates"
    )
    fit.add_argument(
        "--realism-steps",
        type=nonneg_int,
        default=None,
        help="total realism-critic updates (the actor gets one per actor_every)",
    )
    fit.add_argument(
        "--actor-attribute-weight",
        type=nonneg_float,
        default=None,
        help="weight of the attribute-critic term in the actor's loss (new runs only; 0 is the "
        "paper's objective; default: the application's preset)",
    )
    fit.add_argument(
        "--autocast",
        choices=AUTOCAST_MODES,
        default=None,
        help="bf16: the training updates' matrix products in bfloat16 (for GPUs with bfloat16 "
        "tensor cores; slower on CPUs without native bfloat16); default: the run's setting, "
        "off for a new run",
    )
    fit.add_argument(
        "--compile-steps",
        action="store_true",
        help="run the hand-derived training steps through torch.compile (compiled on first "
        "use; pays off on long runs)",
    )
    fit.add_argument(
        "--checkpoint-every",
        type=nonneg_int,
        default=1000,
        help="save every this many realism updates (0: only at the end)",
    )
    fit.add_argument(
        "--cache-dir", default=None, help="cache of the application's pretrained models"
    )
    fit.add_argument("--no-cache", action="store_true", help="do not use the cache")
    fit.add_argument("--no-progress", action="store_true", help="no progress bars")
    fit.add_argument(
        "--threads",
        type=nonneg_int,
        default=1,
        help="torch threads (default 1; 0 = torch's default)",
    )
    add_device_argument(fit)
    fit.set_defaults(func=_cmd_fit)

    sample = subparsers.add_parser(
        "sample",
        help="conditional samples from a run folder",
        description="Samples satisfying an attribute request over the run's attribute names, "
        'e.g. --request "a !b" (!name or not_name for 0, plus the shorthands and '
        "aliases of the run's vocabulary; an unknown name lists the valid ones).",
    )
    sample.add_argument("--run", required=True, help="run folder")
    sample.add_argument("--request", required=True, help="attribute request")
    sample.add_argument("-n", "--num", type=positive_int, default=16, help="number of samples")
    sample.add_argument("--method", choices=METHODS, default="actor")
    sample.add_argument("--seed", type=nonneg_int, default=0)
    sample.add_argument(
        "--steps", type=positive_int, default=None, help="optimizer step limit (method optimize)"
    )
    sample.add_argument(
        "--start",
        choices=OPTIMIZER_STARTS,
        default=None,
        help="where the optimizer starts (method optimize): the prior samples themselves or "
        "the actor's output for them (default: the run's sampling config)",
    )
    sample.add_argument("--out", default=None, help="write outputs/attributes to this .npz")
    sample.add_argument(
        "--png", default=None, help="write a grid of the samples to this .png (2-D outputs only)"
    )
    sample.add_argument(
        "--threads",
        type=nonneg_int,
        default=1,
        help="torch threads (default 1; 0 = torch's default)",
    )
    add_device_argument(sample)
    sample.set_defaults(func=_cmd_sample)

    transform = subparsers.add_parser(
        "transform",
        help="identity-preserving edits of inputs with a run folder",
        description="Changes only the requested attributes of inputs, e.g. --changes b. "
        "Inputs: --input FILE (.npy [N, *data_shape] or .npz with 'images') or "
        "held-out inputs of the run's application (--heldout).",
    )
    transform.add_argument("--run", required=True, help="run folder")
    transform.add_argument("--changes", required=True, help="attributes to change")
    src = transform.add_mutually_exclusive_group()
    src.add_argument("--input", default=None, help=".npy or .npz file of inputs")
    src.add_argument(
        "--heldout",
        type=positive_int,
        default=8,
        help="use the first N held-out inputs (default 8)",
    )
    transform.add_argument(
        "--method", choices=("optimize", "actor", "baseline"), default="optimize"
    )
    transform.add_argument("--steps", type=positive_int, default=None, help="step limit")
    transform.add_argument("--out", default=None, help="write results to this .npz")
    transform.add_argument(
        "--png", default=None, help="write input/edited strips to this .png (2-D inputs only)"
    )
    transform.add_argument(
        "--threads",
        type=nonneg_int,
        default=1,
        help="torch threads (default 1; 0 = torch's default)",
    )
    add_device_argument(transform)
    transform.set_defaults(func=_cmd_transform)

    job = subparsers.add_parser(
        "optimize",
        help="batch latent optimization over a .npy file of targets: chunked, resumable, "
        "distributed under torchrun",
        description="Runs the run's optimizer on every row of TARGETS (int8 [N, A] in the run's "
        "attribute order: 1 on, 0 off, -1 not requested) and writes OUT/latents.npy, "
        "accepted.npy, steps.npy (and images.npy with --decode) and manifest.json. Rerunning "
        "the same command continues a killed job; under `torchrun --nproc-per-node K -m "
        "lcengine optimize ...` the ranks share the chunks.",
    )
    job.add_argument("--run", required=True, help="run folder")
    job.add_argument("--targets", required=True, help="int8 .npy [N, A]")
    job.add_argument("--out", required=True, help="output folder")
    job.add_argument(
        "--start", default=None, help="float32 .npy [N, D] starting latents (default: prior)"
    )
    job.add_argument(
        "--seed",
        type=nonneg_int,
        default=0,
        help="seed of the prior samples (row r starts from position r of its stream) and of "
        "the completion of unrequested attributes (default 0)",
    )
    job.add_argument("--decode", action="store_true", help="also write images.npy")
    job.add_argument(
        "--chunk-rows",
        type=positive_int,
        default=4096,
        help="rows per chunk: the unit of memory, of work per process and of resumption "
        "(default 4096)",
    )
    job.add_argument("--no-progress", action="store_true", help="no progress bar")
    job.add_argument(
        "--threads",
        type=nonneg_int,
        default=1,
        help="torch threads per process (default 1; 0 = torch's default)",
    )
    add_device_argument(job)
    job.set_defaults(func=_cmd_optimize)

    export = subparsers.add_parser(
        "export",
        help="the run's actor-mode sampler as an artifact: an AOTInductor .pt2 or an ONNX file",
        description="Traces (targets [B, A], latents [B, D]) -> images [B, *data_shape] (the "
        "actor, then the decoder) with torch.export, dynamic batch, and writes an AOTInductor "
        "package (--format aoti, OUT.pt2: loads with torch._inductor.aoti_load_package without "
        "lcengine, and from C++) or an ONNX model (--format onnx, OUT.onnx; needs the onnx "
        "extra). The artifact is loaded back and checked against the Python sampler on example "
        "inputs, which are written beside it as OUT's stem + .example.pt.",
    )
    export.add_argument("--run", required=True, help="run folder")
    export.add_argument("--out", required=True, help="the artifact: a .pt2 (aoti) or .onnx path")
    export.add_argument(
        "--format", choices=("aoti", "onnx"), default="aoti", help="artifact format (default aoti)"
    )
    export.add_argument(
        "--example-rows",
        type=positive_int,
        default=8,
        help="rows of the example inputs the artifact is checked on (default 8, at least 2)",
    )
    export.add_argument(
        "--seed", type=nonneg_int, default=0, help="seed of the example inputs (default 0)"
    )
    export.add_argument(
        "--max-batch",
        type=positive_int,
        default=65536,
        help="the largest batch the artifact accepts (default 65536)",
    )
    add_device_argument(export)
    export.set_defaults(func=_cmd_export)


def _refuse_non_empty(folder: Path) -> ValueError:
    from .run import RUN_FILE

    return ValueError(
        f"--run {folder} is a non-empty folder without {RUN_FILE}; refusing to write into it"
    )


def _cmd_fit(args: argparse.Namespace) -> int:
    """``lcengine fit``: holds the run folder's writer lock for the whole command."""
    from .distributed import world_from_env
    from .run import RUN_FILE, is_empty_run_folder
    from .store import WRITER_LOCK_FILE, writer_lock

    folder = Path(args.run)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--run {folder} exists and is not a folder")
    rank, world, _ = world_from_env()
    if (
        rank == 0  # the other ranks see rank 0's files
        and not (folder / RUN_FILE).is_file()
        and not (folder / WRITER_LOCK_FILE).exists()
        and not is_empty_run_folder(folder)
    ):
        raise _refuse_non_empty(folder)  # before the lock: the folder stays as it was
    command_device(args)  # a bad --device fails before the lock is taken
    set_threads(args.threads)
    if world > 1:
        return _fit_distributed(args, folder)
    with writer_lock(folder, "--run"):
        try:
            return _fit_locked(args, folder)
        except KeyboardInterrupt:
            print(
                f"lcengine fit: aborted; the last saved checkpoint in {folder} is intact and "
                f"`lcengine fit --run {folder}` continues from it",
                file=sys.stderr,
                flush=True,
            )
            return 130


def _fit_locked(args: argparse.Namespace, folder: Path) -> int:
    import threading

    from .io import atomic_write_bytes
    from .run import (
        CONSTRAINTS_DIR,
        PREPARING_FILE,
        RUN_FILE,
        accepts_keyword,
        accepts_stop_requested,
        has_checkpoint,
        is_empty_run_folder,
        is_preparing,
        load_run,
        load_training_data,
        read_run_file,
        resolve_application,
        write_run_file,
    )

    progress = not args.no_progress
    device = command_device(args)
    cache_dir = Path(args.cache_dir) if args.cache_dir else None
    stop = threading.Event()
    received: list[int] = []

    def log(msg: str) -> None:
        print(f"[lcengine fit] {msg}", file=sys.stderr, flush=True)

    def prepare(app_path: str, config: dict):
        app = resolve_application(app_path)
        extra: dict = {"stop_requested": stop.is_set} if accepts_stop_requested(app) else {}
        if accepts_keyword(app, "device"):
            extra["device"] = device
        elif device.type != "cpu":
            raise ValueError(
                f"--device {args.device}: application {app_path!r} trains on the CPU only "
                "(its prepare_run takes no device)"
            )
        atomic_write_bytes(folder / PREPARING_FILE, f"{os.getpid()}\n".encode("ascii"))
        # applications that cannot stop early keep the default handlers (a signal ends them;
        # the marker makes the next `lcengine fit` prepare the run again)
        with StopOnSignals(stop, received, enabled="stop_requested" in extra):
            run = app.prepare_run(
                folder,
                config,
                cache_dir=cache_dir,
                use_cache=not args.no_cache,
                progress=progress,
                log=log,
                checkpoint_every=args.checkpoint_every,
                **extra,
            )
        if not received:
            (folder / PREPARING_FILE).unlink(missing_ok=True)
        return run

    def stopped(run) -> int:
        import signal

        t = run.constraints.trainer if run is not None else None
        where = (
            f"at attribute step {t.attribute_step}, realism step {t.realism_step}"
            if t is not None
            else "early"
        )
        saved = (
            f"the checkpoint is in {folder / CONSTRAINTS_DIR}"
            if has_checkpoint(folder)
            else "no checkpoint was saved yet"
        )
        print(
            f"lcengine fit: stopped by {signal.Signals(received[0]).name} {where}; {saved}; "
            f"`lcengine fit --run {folder}` continues it",
            file=sys.stderr,
            flush=True,
        )
        return 128 + int(received[0])

    if (folder / RUN_FILE).is_file() and args.actor_attribute_weight is not None:
        raise ValueError(
            f"--actor-attribute-weight applies to new runs only; {folder} already holds a run "
            "(its actor is trained with the weight in its run.json)"
        )
    if (folder / RUN_FILE).is_file() and (not has_checkpoint(folder) or is_preparing(folder)):
        # interrupted before its preparation finished: build the run again from its own config
        run = prepare(*read_run_file(folder))
        if received:
            return stopped(run)
        print(f"completed {folder}: realism critic {run.constraints.trainer.realism_step} updates")
        return 0
    if (folder / RUN_FILE).is_file():
        if args.autocast is not None:  # before anything is loaded onto the device
            from .training import check_autocast

            check_autocast(args.autocast, device)
        run = load_run(folder, device=device)
        lc = run.constraints
        before = (lc.trainer.attribute_step, lc.trainer.realism_step)
        log(f"continuing {folder} from attribute step {before[0]}, realism step {before[1]}")
        a_total, r_total = (
            lc.training.attribute_steps if args.attribute_steps is None else args.attribute_steps,
            lc.training.realism_steps if args.realism_steps is None else args.realism_steps,
        )
        _apply_speed_settings(lc, args)
        if a_total > before[0] or r_total > before[1]:
            load_training_data(run, progress=progress)  # checkpoints hold no training rows
        with StopOnSignals(stop, received):
            lc.fit(
                attribute_steps=args.attribute_steps,
                realism_steps=args.realism_steps,
                progress=progress,
                checkpoint_dir=folder / CONSTRAINTS_DIR,
                checkpoint_every=args.checkpoint_every,
                stop_requested=stop.is_set,
            )
        write_run_file(folder, run.application_path, run.application.updated_config(run.config, lc))
        if received:
            return stopped(run)
        print(
            f"continued {folder}: attribute critic {before[0]} -> {lc.trainer.attribute_step} "
            f"updates, realism critic {before[1]} -> {lc.trainer.realism_step} updates"
        )
        return 0
    if not is_empty_run_folder(folder):
        raise _refuse_non_empty(folder)
    overrides = {
        k: v
        for k, v in (
            ("attribute_steps", args.attribute_steps),
            ("realism_steps", args.realism_steps),
            ("actor_attribute_weight", args.actor_attribute_weight),
            ("autocast", args.autocast),
            ("compile_steps", args.compile_steps or None),
        )
        if v is not None
    }
    config = resolve_application(args.application).default_config(
        fast=args.fast, seed=args.seed, training_overrides=overrides
    )
    run = prepare(args.application, config)
    if received:
        return stopped(run)
    t = run.constraints.trainer
    print(
        f"created {folder}: attribute critic {t.attribute_step} updates, realism critic "
        f"{t.realism_step} updates, zero-shot {[c.name for c in run.constraints.zero_shot]}"
    )
    return 0


def _fit_distributed(args: argparse.Namespace, folder: Path) -> int:
    """``lcengine fit`` under torchrun: rank 0 holds the folder's lock and, for a new run,
    prepares it without training the constraints (the application's model, data and files);
    then every rank loads the run and trains the critics and the actor together (global
    batches split among the ranks, gradients averaged, rank 0 checkpointing) up to the totals:
    ``--attribute-steps``/``--realism-steps``, else the run's own (a new run: the
    application's default config's ``training``)."""
    import contextlib
    import threading

    from .distributed import process_group, world_from_env
    from .run import CONSTRAINTS_DIR, load_run, load_training_data, write_run_file
    from .store import writer_lock

    progress = not args.no_progress
    stop = threading.Event()
    received: list[int] = []
    main = world_from_env()[0] == 0
    lock = writer_lock(folder, "--run") if main else contextlib.nullcontext()
    with lock, contextlib.ExitStack() as stack:
        plan: dict = {}
        if main:  # before the group exists: a run prepared here trains on this process alone
            try:
                plan = _distributed_plan(args, folder)
            except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
                plan = {"error": str(exc)}
        g = stack.enter_context(process_group(command_device(args)))
        plan = g.broadcast(plan)
        if "error" in plan:
            raise ValueError(plan["error"])
        run = load_run(folder, device=g.device)
        lc = run.constraints
        _apply_speed_settings(lc, args)
        a_total, r_total = plan["totals"]
        load_training_data(run, progress=progress and g.is_main)
        with StopOnSignals(stop, received):
            lc.fit(
                attribute_steps=a_total,
                realism_steps=r_total,
                progress=progress and g.is_main,
                checkpoint_dir=folder / CONSTRAINTS_DIR,
                checkpoint_every=args.checkpoint_every,
                stop_requested=stop.is_set,
            )
        if g.is_main:
            config = run.application.updated_config(run.config, lc)
            write_run_file(folder, run.application_path, config)
        g.barrier()
    t = lc.trainer
    if g.is_main:
        state = "stopped" if lc.fit_stopped else "trained"
        print(
            f"{state} {folder} on {g.world} processes: attribute critic {t.attribute_step} "
            f"updates, realism critic {t.realism_step} updates"
            + (f"; `lcengine fit --run {folder}` continues it" if lc.fit_stopped else "")
        )
    return 128 + int(received[0]) if received else 0


def _distributed_plan(args: argparse.Namespace, folder: Path) -> dict:
    """Rank 0's part before the ranks train: the totals, and a new run prepared (constraints
    untrained) when the folder holds none."""
    from .run import RUN_FILE, is_empty_run_folder, read_run_file, resolve_application

    if (folder / RUN_FILE).is_file():
        if args.actor_attribute_weight is not None:
            raise ValueError(
                f"--actor-attribute-weight applies to new runs only; {folder} already holds a "
                "run (its actor is trained with the weight in its run.json)"
            )
        training = read_run_file(folder)[1].get("training")
        return {"totals": _totals(args, training)}
    if not is_empty_run_folder(folder):
        raise _refuse_non_empty(folder)
    overrides = {
        k: v
        for k, v in (
            ("actor_attribute_weight", args.actor_attribute_weight),
            ("autocast", args.autocast),
            ("compile_steps", args.compile_steps or None),
        )
        if v is not None
    }
    app = resolve_application(args.application)
    full = app.default_config(fast=args.fast, seed=args.seed, training_overrides=overrides)
    totals = _totals(args, full.get("training"))
    untrained = app.default_config(
        fast=args.fast,
        seed=args.seed,
        training_overrides={**overrides, "attribute_steps": 0, "realism_steps": 0},
    )
    cache_dir = Path(args.cache_dir) if args.cache_dir else None
    app.prepare_run(
        folder, untrained, cache_dir=cache_dir, use_cache=not args.no_cache,
        progress=not args.no_progress, log=lambda m: print(f"[lcengine fit] {m}",
        file=sys.stderr, flush=True), checkpoint_every=0,
    )  # fmt: skip
    return {"totals": totals}


def _totals(args: argparse.Namespace, training: Any) -> tuple[int, int]:
    """The attribute and realism totals: the options, else the config's ``training``."""
    from .config import TrainingConfig

    if args.attribute_steps is not None and args.realism_steps is not None:
        return args.attribute_steps, args.realism_steps
    if not isinstance(training, dict):
        raise ValueError(
            "under torchrun this run's totals are not known: give --attribute-steps and "
            "--realism-steps"
        )
    tc = TrainingConfig.from_dict(training)
    return (
        tc.attribute_steps if args.attribute_steps is None else args.attribute_steps,
        tc.realism_steps if args.realism_steps is None else args.realism_steps,
    )


def _apply_speed_settings(lc, args: argparse.Namespace) -> None:
    """``--autocast`` and ``--compile-steps`` on a continued run (they change no weights)."""
    if args.autocast is not None:  # checked against the device before the run was loaded
        lc.training.autocast = args.autocast  # the trainer's config is the same object
    if args.compile_steps:
        lc.training.compile_steps = True


def _measured_summary(run, res, measured) -> dict:
    """Accuracy of the measured attributes on the requested ones (empty when unmeasured)."""
    from .metrics import attribute_metrics

    if measured is None:
        return {}
    m = attribute_metrics(res.attributes, measured, res.mask, run.constraints.attribute_names)
    return {
        "measured_accuracy_on_requested": m["overall_accuracy"],
        "rows_fully_satisfied": m["row_accuracy"],
    }


def check_sample_count(n: int, latent_dim: int, data_shape: Sequence[int]) -> None:
    """Refuses, before any work, a sample count whose arrays would not fit in half of this
    machine's memory (latents with their Adam state and a copy, images twice: the decoded
    batch and the written array)."""
    item = 1
    for s in data_shape:
        item *= int(s)
    need = n * (6 * latent_dim + 2 * item) * 4  # bytes, float32
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not exposed here: no limit known
        return
    if need > memory // 2:
        raise ValueError(
            f"-n {n} needs about {need / 2**30:.1f} GiB for latents and outputs, more than half "
            f"of this machine's {memory / 2**30:.1f} GiB; sample in batches of at most "
            f"{max(1, (memory // 2) // max(1, need // n))} (different --seed per batch)"
        )


def _cmd_optimize(args: argparse.Namespace) -> int:
    from .job import JobStopped, optimize_job

    device = command_device(args)
    set_threads(args.threads)
    try:
        m = optimize_job(
            args.run,
            args.targets,
            args.out,
            start=args.start,
            seed=args.seed,
            decode=args.decode,
            chunk_rows=args.chunk_rows,
            device=device,
            progress=not args.no_progress,
            log=lambda msg: print(f"[lcengine optimize] {msg}", file=sys.stderr, flush=True),
            handle_signals=True,
        )
    except JobStopped as stop:
        print(
            f"lcengine optimize: {stop}; the finished chunks are in {args.out}; the same "
            "command continues the job",
            file=sys.stderr,
            flush=True,
        )
        return 128 + stop.signum
    except KeyboardInterrupt:
        print(
            f"lcengine optimize: aborted; the chunks recorded in {args.out} are done and the "
            "same command continues the job",
            file=sys.stderr,
            flush=True,
        )
        return 130
    if os.environ.get("RANK", "0") == "0":
        print(
            f"{m['rows']} rows, {m['accepted_rows']} accepted, {len(m['chunks_done'])} of "
            f"{len(m['chunks'])} chunks done by {m['world_size']} process(es): {args.out}"
        )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_sampler
    from .sampler import ConditionalSampler

    device = command_device(args)
    sampler = ConditionalSampler.from_run(args.run, device=device)
    res = export_sampler(
        sampler,
        args.out,
        format=args.format,
        example_rows=args.example_rows,
        seed=args.seed,
        max_batch=args.max_batch,
        log=lambda msg: print(f"[lcengine export] {msg}", file=sys.stderr, flush=True),
    )
    print(
        json.dumps(
            {
                "out": str(res.path),
                "example": str(res.example_path),
                "format": res.format,
                "max_abs_diff": res.max_abs_diff,
                "seconds": round(res.seconds, 1),
                "metadata": {k: json.loads(v) for k, v in res.metadata.items()},
            },
            indent=2,
        )
    )
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from .figures import write_image_grid
    from .io import check_output_path, write_npz
    from .run import load_run

    for option in ("out", "png"):
        if getattr(args, option):
            check_output_path(f"--{option}", getattr(args, option))
    device = command_device(args)
    set_threads(args.threads)
    run = load_run(args.run, device=device)
    lc = run.constraints
    check_sample_count(args.num, run.model.latent_dim, run.model.data_shape)
    overrides = {k: getattr(args, k) for k in ("steps", "start") if getattr(args, k) is not None}
    res = lc.sample(args.request, args.num, method=args.method, seed=args.seed, **overrides)
    measured = run.measure(res.images)  # [N, A] or None
    summary = {
        "request": args.request,
        "method": args.method,
        "n": args.num,
        "requested": [n for n, k in zip(lc.attribute_names, res.mask[0], strict=True) if k],
        **_measured_summary(run, res, measured),
        "accepted_by_critics": float(res.converged.mean()),
        "mean_steps": float(res.steps.mean()),
        "seconds": res.seconds,
    }
    if args.out:
        extra = {"measured": measured} if measured is not None else {}
        write_npz(
            args.out,
            images=res.images.astype(np.float32),
            attributes=res.attributes.astype(np.int8),
            requested_mask=res.mask,
            attribute_names=np.array(lc.attribute_names),
            method=np.array([args.method] * args.num),
            accepted=res.converged,
            latents=res.latents.cpu().numpy(),
            **extra,
        )
        summary["out"] = args.out
    if args.png:
        write_image_grid(
            args.png, [(args.method, res.images[:16])], f"{args.request!r} ({args.method})"
        )
        summary["png"] = args.png
    print(json.dumps(summary, indent=2))
    return 0


def load_input_file(path: str, data_shape: tuple[int, ...]) -> np.ndarray:
    """Inputs from a ``.npy`` file or the ``images`` array of a ``.npz``, as float32
    ``[N, *data_shape]`` (a single item gains the batch dimension)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--input {p} does not exist")
    try:
        obj = np.load(p, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"--input {p}: not a readable .npy/.npz file ({exc})") from exc
    if isinstance(obj, np.lib.npyio.NpzFile):
        if "images" not in obj.files:
            raise ValueError(f"--input {p} has no 'images' array (found {obj.files})")
        obj = obj["images"]
    x = np.asarray(obj, dtype=np.float32)
    if x.ndim == len(data_shape):
        x = x[None]
    if x.shape[1:] != tuple(data_shape):
        raise ValueError(
            f"--input images must have shape [N, {', '.join(map(str, data_shape))}], "
            f"got {list(x.shape)}"
        )
    if not np.isfinite(x).all():
        raise ValueError("--input images contain NaN or infinite values")
    return x


def _cmd_transform(args: argparse.Namespace) -> int:
    from .figures import write_image_grid
    from .io import check_output_path, write_npz
    from .run import load_run

    for option in ("out", "png"):
        if getattr(args, option, None):
            check_output_path(f"--{option}", getattr(args, option))
    device = command_device(args)
    set_threads(args.threads)
    run = load_run(args.run, device=device)
    lc = run.constraints
    if args.input:
        x = run.application.check_inputs(load_input_file(args.input, lc.model.data_shape))
    else:
        x = run.application.example_inputs(run, args.heldout)
    overrides = {"steps": args.steps} if args.steps is not None else {}
    tr = lc.transform(x, args.changes, method=args.method, **overrides)
    meas_edit = run.measure(tr.images)  # [B, A] or None
    summary = {"changes": args.changes, "method": args.method, "rows": int(len(x)), **tr.summary()}
    if meas_edit is not None:
        success = ((meas_edit == tr.attributes) | ~tr.mask).all(axis=1)  # [B]
        summary["measured_success"] = float(success.mean())
    summary["per_row"] = [
        {
            "converged": bool(c),
            "steps": int(s),
            "latent_distance": float(d),
            "pixel_distance": float(p),
        }
        for c, s, d, p in zip(
            tr.converged, tr.steps, tr.latent_distance, tr.pixel_distance, strict=True
        )
    ]
    if args.out:
        extra = {"measured": meas_edit} if meas_edit is not None else {}
        write_npz(
            args.out,
            inputs=np.asarray(x, dtype=np.float32),
            reconstructions=tr.source_images,
            images=tr.images,
            attributes=tr.attributes.astype(np.int8),
            requested_mask=tr.mask,
            attribute_names=np.array(lc.attribute_names),
            converged=tr.converged,
            steps=tr.steps,
            latent_distance=tr.latent_distance,
            pixel_distance=tr.pixel_distance,
            **extra,
        )
        summary["out"] = args.out
    if args.png:
        write_image_grid(
            args.png,
            [
                ("input", np.asarray(x)[:16]),
                ("reconstruction", tr.source_images[:16]),
                ("edited", tr.images[:16]),
            ],
            f"transform {args.changes!r}",
        )
        summary["png"] = args.png
    print(json.dumps(summary, indent=2))
    return 0


__all__ = [
    "add_commands",
    "add_device_argument",
    "command_device",
    "load_input_file",
    "nonneg_int",
    "positive_int",
    "set_threads",
]
