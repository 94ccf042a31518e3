# SPDX-License-Identifier: Apache-2.0
"""``lcengine bench``'s options, torch-free: building the parser (``lcengine --help``) loads no
torch. The run they select is :func:`lcengine.benchmarks.cli.run_from_args`.

The shape tables, ``OPTIMIZER_OP``, ``FIT_OP``, ``JOB_OP``, ``SERVING_OP`` and ``FIT_STEPS`` are
defined here;
``ROW_OPS``, ``OPTIMIZER_CASE_NAMES``, ``FIT_CASE_NAMES`` and ``DTYPE_NAMES`` are the keys of
:data:`~lcengine.benchmarks.row_ops.CASES`, :data:`~lcengine.benchmarks.optimizer.OPTIMIZER_CASES`,
:data:`~lcengine.benchmarks.fit.FIT_CASES` and :data:`~lcengine.benchmarks.row_ops.DTYPES` (tests
keep them equal).
"""

from __future__ import annotations

import argparse

OPTIMIZER_OP = "optimize_latents"
FIT_OP = "fit"  # the trainer's steps per second (lcengine.benchmarks.fit)
JOB_OP = "optimize_job"  # lcengine optimize's rows/s at 1 and more processes (.job)
SERVING_OP = "serving"  # per-request latency of a run's sampler and its exports (.serving)
FIT_STEPS = ("realism", "attribute", "actor")
FIT_CASE_NAMES = ("demo_B128_D16_4x256_relu", "paper_B128_D1024_4x2048_relu")
ROW_OPS = (
    "reparameterize",
    "standard_normal",
    "gaussian_kl",
    "distance_penalty",
    "constraint_loss",
    "latent_adam",
)
OPTIMIZER_CASE_NAMES = (
    "B64_D64_4x256_relu_300steps",
    "B64_D64_4x256_relu_300steps_converging",
    "B16384_D64_4x256_relu",
    "B16384_D64_4x256_softplus",
    "B1_D1024_4x2048_relu",
    "B1024_D1024_4x2048_relu",
    "gpu_B1M_D1024_4x2048_relu",
    "gpu_B1M_D64_4x256_relu",
    "gpu_B4096_D64_4x256_relu_300steps",
)
DTYPE_NAMES = ("float32", "float16", "bfloat16")
# ROWSxDIM per device type. Default: finishes in about a minute.
DEFAULT_SHAPES = {"cpu": ["65536x64"], "cuda": ["1048576x1024"]}
# --large: 2^20 latents of width 64 on CPU (256 MiB per float32 tensor), 2^20 x 1024 on GPU.
LARGE_SHAPES = {"cpu": ["1048576x64"], "cuda": ["1048576x1024"]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``lcengine bench``."""
    parser.add_argument(
        "--ops",
        default=",".join(ROW_OPS),
        help=f"comma-separated ops (default: all of {', '.join(ROW_OPS)}); "
        f"'{OPTIMIZER_OP}' times whole latent-optimizer calls (FLOP-based "
        f"table, the cases of --optimizer-cases); '{FIT_OP}' times the trainer's "
        f"{', '.join(FIT_STEPS)} steps per second (autograd, torch.compile, hand-derived; "
        f"the cases of --fit-cases); '{JOB_OP}' times `lcengine optimize` at 1 and more "
        f"processes (--job-processes) for the parallel efficiency; '{SERVING_OP}' times "
        "per-request latency (p50, p99, requests/s) of a run's sampler: eager module, "
        "ConditionalSampler, AOTInductor package, ONNX Runtime, optimize mode fused and eager "
        "(the --serving-* options)",
    )
    parser.add_argument(
        "--serving-batches",
        default="1,64",
        help=f"comma-separated rows per request for --ops {SERVING_OP} (default 1,64)",
    )
    parser.add_argument(
        "--serving-run",
        default=None,
        metavar="RUN",
        help=f"the run folder --ops {SERVING_OP} benches (`lcengine fit --run RUN`; default: "
        "a synthetic run of the digits application's size, fitted in a temporary folder)",
    )
    parser.add_argument(
        "--serving-requests",
        type=int,
        default=1000,
        help=f"timed requests per actor-mode contender and batch for --ops {SERVING_OP} "
        "(default 1000; 20 untimed first)",
    )
    parser.add_argument(
        "--serving-optimize-requests",
        type=int,
        default=30,
        help=f"timed requests per optimize-mode contender and batch for --ops {SERVING_OP} "
        "(default 30; their p99 is then close to the slowest)",
    )
    parser.add_argument(
        "--serving-compile",
        action="store_true",
        help=f"--ops {SERVING_OP}: also time torch.compile of the eager module",
    )
    parser.add_argument(
        "--serving-threads",
        type=int,
        default=None,
        help=f"torch (and ONNX Runtime intra-op) threads for --ops {SERVING_OP} (default: 1 "
        "on CPU, one serving worker per core; torch's on GPU)",
    )
    parser.add_argument(
        "--job-processes",
        default="1,2",
        help=f"comma-separated process counts for --ops {JOB_OP} (default 1,2; above 1 through "
        "torchrun, one thread each; on CUDA one GPU each)",
    )
    parser.add_argument(
        "--job-rows",
        type=int,
        default=16384,
        help=f"rows of the --ops {JOB_OP} targets file (default 16384)",
    )
    parser.add_argument(
        "--optimizer-cases",
        default=None,
        help="comma-separated optimize_latents cases (default: those sized for "
        f"the device; all: {', '.join(OPTIMIZER_CASE_NAMES)})",
    )
    parser.add_argument(
        "--fit-cases",
        default=None,
        help=f"comma-separated cases of --ops {FIT_OP} (default: all: "
        f"{', '.join(FIT_CASE_NAMES)}; the paper size takes at most 3 reps on CPU)",
    )
    parser.add_argument(
        "--fit-threads",
        default=None,
        help=f"comma-separated torch thread counts for --ops {FIT_OP} (default: torch's; "
        "on CPU the demo case also at 1, the default of `lcengine fit --threads`)",
    )
    parser.add_argument(
        "--weight-dtypes",
        default=None,
        help="optimize_latents critic weight precisions to time: float32, "
        "bfloat16 (default: float32 on CPU, both on GPU)",
    )
    parser.add_argument(
        "--shapes",
        default=None,
        help="comma-separated ROWSxDIM for the row ops (default: CPU "
        f"{','.join(DEFAULT_SHAPES['cpu'])}, GPU "
        f"{','.join(DEFAULT_SHAPES['cuda'])}; see --large)",
    )
    parser.add_argument(
        "--large",
        action="store_true",
        help="row ops at 2^20 rows: CPU "
        f"{','.join(LARGE_SHAPES['cpu'])}, GPU "
        f"{','.join(LARGE_SHAPES['cuda'])}",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=list(DTYPE_NAMES),
        help="element type of the row ops' inputs (default: float32)",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument(
        "--backends",
        default="auto",
        help="comma-separated lcengine backends to time (auto, native, triton)",
    )
    parser.add_argument(
        "--compile-modes",
        default=None,
        help="comma-separated torch.compile modes, or 'none' (default: 'default' "
        "on CPU; 'default,max-autotune-no-cudagraphs' on GPU)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="untimed calls per contender before timing (optimize_latents: at most 1)",
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=15,
        help="timed calls per contender (optimize_latents: at most 5); the "
        "report keeps their quartiles, min and max",
    )
    parser.add_argument(
        "--json", dest="json_path", default=None, help="also save the report here (JSON)"
    )
    parser.add_argument(
        "--plot",
        dest="plot_path",
        default=None,
        help="draw the measured GB/s and GFLOP/s against the probes into this "
        "PNG (default: next to --json, same name with .png)",
    )
    parser.add_argument("--no-plot", action="store_true", help="draw no plot")
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("OLD.json", "NEW.json"),
        default=None,
        help="compare two saved reports instead of running: time per row, "
        "NEW/OLD, and whether the change exceeds the measured spread",
    )


__all__ = [
    "DEFAULT_SHAPES",
    "DTYPE_NAMES",
    "FIT_CASE_NAMES",
    "FIT_OP",
    "JOB_OP",
    "FIT_STEPS",
    "LARGE_SHAPES",
    "OPTIMIZER_CASE_NAMES",
    "OPTIMIZER_OP",
    "ROW_OPS",
    "SERVING_OP",
    "add_arguments",
]
