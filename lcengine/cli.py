# SPDX-License-Identifier: Apache-2.0
"""The ``lcengine`` command: info, bench, the digits demo, and fit/sample/transform of runs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence


def _cmd_info(args: argparse.Namespace) -> int:
    from .backend import build_info

    info = build_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        print(f"{key:<{width}}  {value}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .benchmarks.cli import run_from_args

    return run_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lcengine",
        description="Latent constraints: conditional generation from unconditional models, on "
        "fused kernels.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    info = sub.add_parser("info", help="what was built and which backends are usable here")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_cmd_info)

    # Building the parser loads no torch, numpy or matplotlib (`lcengine --help` is instant):
    # each command module imports its heavy dependencies inside its handler.
    from .benchmarks.cli_args import add_arguments as add_bench_arguments

    bench = sub.add_parser("bench", help="time the kernels against eager PyTorch and torch.compile")
    add_bench_arguments(bench)
    bench.set_defaults(func=_cmd_bench)

    # The embedded digits supply `lcengine demo` and the application that `lcengine fit`
    # creates new runs with; fit/sample/transform themselves work on any run folder.
    from .apps.digits.commands import APPLICATION_PATH, add_demo_command
    from .method.commands import add_commands

    add_demo_command(sub)
    add_commands(sub, default_application=APPLICATION_PATH)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader went away (`lcengine info | head -1`): stop quietly, as a shell tool does;
        # stdout goes to devnull so that the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
        print(f"lcengine {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
