# SPDX-License-Identifier: Apache-2.0
"""The code behind ``lcengine bench`` and the pytest-benchmark suites in ``bench/``.

Every figure is a ratio measured side by side in one process: lcengine against eager PyTorch
and against ``torch.compile`` of the same eager code (best of the modes tried), same inputs,
same dtype, contenders interleaved round-robin, median of many repetitions after warm-up. Each
row also reports effective bandwidth (the bytes the op must move at least, divided by time) and
its fraction of a copy probe (``dst.copy_(src)``) measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from . import ops
from .backend import build_info, resolve_backend, unavailable_reason
from .reference import constraint_loss_ref, distance_penalty_ref, gaussian_kl_ref, latent_adam_ref_

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DEFAULT_SHAPES = {"cpu": ["65536x64"], "cuda": ["1048576x1024"]}
LARGE_SHAPES = {"cpu": ["1048576x64"], "cuda": ["1048576x1024"]}


@dataclass
class Case:
    """One op as benchmarked: inputs, the eager contender, the lcengine call, bytes moved."""

    name: str
    description: str
    # (rows, dim, dtype, device) -> dict of inputs
    make_inputs: Callable[[int, int, torch.dtype, torch.device], dict]
    eager: Callable[[dict], object]
    lcengine: Callable[[dict, str], object]
    # element-sized tensor passes over [rows, dim] that the op must make at least
    passes: int
    # inputs differentiated after the forward (empty: forward only)
    wrt: tuple = ()


def _grad_inputs(rows, dim, dtype, device, names, scale=1.0):
    return {n: (torch.randn(rows, dim, device=device) * scale).to(dtype).requires_grad_(True)
            for n in names}


def _reparam_eager(x):
    # what a user writes in eager PyTorch (torch's own RNG, not the Philox stream)
    return x["mu"] + torch.exp(0.5 * x["logvar"]) * torch.randn_like(x["mu"])


def _adam_inputs(rows, dim, dtype, device):
    return {"z": torch.randn(rows, dim, device=device).to(dtype),
            "grad": torch.randn(rows, dim, device=device).to(dtype),
            "m": torch.zeros(rows, dim, device=device, dtype=dtype),
            "v": torch.zeros(rows, dim, device=device, dtype=dtype)}


def _adam_eager(x):
    return latent_adam_ref_(x["z"], x["grad"], x["m"], x["v"], 3, lr=1e-3)


CASES = {
    "reparameterize": Case(
        "reparameterize", "z = mu + exp(logvar/2) * eps, forward",
        lambda r, d, dt, dev: {"mu": torch.randn(r, d, device=dev).to(dt),
                               "logvar": torch.randn(r, d, device=dev).to(dt)},
        _reparam_eager,
        lambda x, b: ops.reparameterize(x["mu"], x["logvar"], seed=1, backend=b),
        passes=3),
    "standard_normal": Case(
        "standard_normal", "prior samples N(0, I)",
        lambda r, d, dt, dev: {"shape": (r, d), "dtype": dt, "device": dev},
        lambda x: torch.randn(x["shape"], dtype=x["dtype"], device=x["device"]),
        lambda x, b: ops.standard_normal(x["shape"], seed=1, dtype=x["dtype"],
                                         device=x["device"], backend=b),
        passes=1),
    "gaussian_kl": Case(
        "gaussian_kl", "KL to N(0, I), mean over rows, forward + backward",
        lambda r, d, dt, dev: _grad_inputs(r, d, dt, dev, ("mu", "logvar")),
        lambda x: gaussian_kl_ref(x["mu"], x["logvar"]),
        lambda x, b: ops.gaussian_kl(x["mu"], x["logvar"], backend=b),
        passes=4, wrt=("mu", "logvar")),
    "distance_penalty": Case(
        "distance_penalty", "log(1 + (z - z_ref)^2) / sigma^2, mean, forward + backward wrt z",
        lambda r, d, dt, dev: {**_grad_inputs(r, d, dt, dev, ("z",)),
                               "z_ref": torch.randn(r, d, device=dev).to(dt),
                               "sigma": torch.rand(d, device=dev) + 0.5},
        lambda x: distance_penalty_ref(x["z"], x["z_ref"], x["sigma"]),
        lambda x, b: ops.distance_penalty(x["z"], x["z_ref"], x["sigma"], backend=b),
        passes=3, wrt=("z",)),
    "constraint_loss": Case(
        "constraint_loss", "BCE with logits, mean, forward + backward wrt logits",
        lambda r, d, dt, dev: {**_grad_inputs(r, d, dt, dev, ("logits",), scale=3.0),
                               "target": (torch.rand(r, d, device=dev) > 0.5).to(dt)},
        lambda x: constraint_loss_ref(x["logits"], x["target"]),
        lambda x, b: ops.constraint_loss(x["logits"], x["target"], backend=b),
        passes=3, wrt=("logits",)),
    "latent_adam": Case(
        "latent_adam", "in-place Adam step on latents",
        _adam_inputs, _adam_eager,
        lambda x, b: ops.latent_adam_(x["z"], x["grad"], x["m"], x["v"], 3, lr=1e-3, backend=b),
        passes=7),
}


def _timed_call(fn: Callable[[dict], object], inputs: dict, wrt: Sequence[str]):
    """fn(inputs), followed by the gradient wrt ``wrt`` when the case times forward+backward."""
    if not wrt:
        return lambda: fn(inputs)
    return lambda: torch.autograd.grad(fn(inputs), [inputs[n] for n in wrt])


def parse_shape(text: str) -> tuple[int, int]:
    try:
        rows, dim = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"shape must look like ROWSxDIM (e.g. 65536x64), got {text!r}") from None
    if rows < 1 or dim < 1:
        raise ValueError(f"shape sizes must be >= 1, got {text!r}")
    return rows, dim


class Timer:
    """Wall-clock timing; CUDA events plus an L2 flush on GPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.flush = (torch.empty(64 * 2**20, dtype=torch.int32, device=device)
                      if device.type == "cuda" else None)

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.device.type == "cuda":
            self.flush.zero_()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(self.device)
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def measure(contenders: dict[str, Callable[[], object]], timer: Timer, *, warmup: int,
            reps: int) -> dict[str, float]:
    """Median seconds per contender, contenders interleaved round-robin."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(reps):
        for name, fn in contenders.items():
            samples[name].append(timer(fn))
    return {name: statistics.median(s) for name, s in samples.items()}


def copy_probe(nbytes: int, device: torch.device, timer: Timer, warmup: int,
               reps: int) -> float:
    """Copy bandwidth in GB/s (read + write) for a buffer of ``nbytes``."""
    n = max(nbytes // 4, 1 << 16)
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    t = measure({"copy": lambda: dst.copy_(src)}, timer, warmup=warmup, reps=reps)["copy"]
    return 2 * n * 4 / t / 1e9


def _compiled(case: Case, modes: Sequence[str]) -> dict[str, Callable]:
    out = {}
    for mode in modes:
        out[f"compile[{mode}]"] = torch.compile(case.eager, mode=None if mode == "default"
                                                else mode, dynamic=False)
    return out


def run(ops_names: Sequence[str], shapes: Sequence[tuple[int, int]], dtype: torch.dtype,
        device: torch.device, *, warmup: int = 3, reps: int = 15,
        compile_modes: Sequence[str] = ("default",), backends: Sequence[str] = ("auto",),
        progress: bool = True) -> dict:
    """Benchmark ``ops_names`` over ``shapes``; returns a JSON-serialisable report."""
    timer = Timer(device)
    rows_out = []
    probes = {}
    for rows, dim in shapes:
        elem = torch.tensor([], dtype=dtype).element_size()
        probe_bytes = rows * dim * elem
        probes[f"{rows}x{dim}"] = copy_probe(max(probe_bytes, 4), device, timer, warmup, reps)
        for name in ops_names:
            case = CASES[name]
            inputs = case.make_inputs(rows, dim, dtype, device)
            contenders = {"eager": _timed_call(case.eager, inputs, case.wrt)}
            compile_errors = {}
            for label, fn in _compiled(case, compile_modes).items():
                call = _timed_call(fn, inputs, case.wrt)
                try:
                    call()  # compile outside the timed region
                    contenders[label] = call
                except Exception as exc:  # a contender that cannot compile is reported, not hidden
                    compile_errors[label] = f"{type(exc).__name__}: {exc}"[:300]
            for b in backends:
                concrete = resolve_backend(b, device, dtype)
                contenders[f"lcengine[{concrete}]"] = _timed_call(
                    lambda x, bb=concrete: case.lcengine(x, bb), inputs, case.wrt)
            if progress:
                print(f"  timing {name} {rows}x{dim} {str(dtype).replace('torch.', '')} "
                      f"({len(contenders)} contenders)...", flush=True)
            times = measure(contenders, timer, warmup=warmup, reps=reps)
            nbytes = case.passes * rows * dim * elem
            compiled = {k: v for k, v in times.items() if k.startswith("compile[")}
            best_compile = min(compiled.values()) if compiled else math.nan
            for label, t in times.items():
                if not label.startswith("lcengine["):
                    continue
                gbs = nbytes / t / 1e9
                rows_out.append({
                    "op": name, "shape": f"{rows}x{dim}", "dtype": str(dtype).replace("torch.", ""),
                    "device": str(device), "backend": label[9:-1], "time_ms": t * 1e3,
                    "eager_ms": times["eager"] * 1e3,
                    "best_compile_ms": best_compile * 1e3 if compiled else None,
                    "compile_ms": {k: v * 1e3 for k, v in compiled.items()},
                    "compile_errors": compile_errors,
                    "effective_GBps": gbs, "copy_probe_GBps": probes[f"{rows}x{dim}"],
                    "fraction_of_copy": gbs / probes[f"{rows}x{dim}"],
                    "speedup_vs_eager": times["eager"] / t,
                    "speedup_vs_compile": (best_compile / t) if compiled else None,
                    "speedup_vs_best_of_eager_and_compile":
                        min([times["eager"]] + list(compiled.values())) / t,
                })
    return {"environment": _environment(device), "copy_probe_GBps": probes,
            "settings": {"warmup": warmup, "reps": reps, "compile_modes": list(compile_modes)},
            "rows": rows_out}


def _environment(device: torch.device) -> dict:
    info = build_info()
    env = {"torch": torch.__version__, "lcengine": info["version"],
           "python": platform.python_version(), "machine": platform.machine(),
           "processor": platform.processor() or platform.machine(),
           "torch_threads": torch.get_num_threads(),
           "openmp_threads": info["openmp_threads"]}
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    return env


def format_table(report: dict) -> str:
    header = (f"{'op':<17} {'shape':<13} {'dtype':<8} {'backend':<7} {'time ms':>9} "
              f"{'GB/s':>7} {'of copy':>8} {'x eager':>8} {'x compile':>10} {'x best':>7}")
    lines = [header, "-" * len(header)]
    for r in report["rows"]:
        vs_compile = (f"{r['speedup_vs_compile']:>10.2f}" if r["speedup_vs_compile"] is not None
                      else f"{'n/a':>10}")
        lines.append(f"{r['op']:<17} {r['shape']:<13} {r['dtype']:<8} {r['backend']:<7} "
                     f"{r['time_ms']:>9.3f} {r['effective_GBps']:>7.2f} "
                     f"{r['fraction_of_copy']:>7.0%} {r['speedup_vs_eager']:>8.2f} {vs_compile} "
                     f"{r['speedup_vs_best_of_eager_and_compile']:>7.2f}")
    env = report["environment"]
    probes = ", ".join(f"{k}: {v:.1f} GB/s" for k, v in report["copy_probe_GBps"].items())
    lines.append(f"copy probe {probes}; torch {env['torch']}, {env.get('device_name', env['processor'])},"
                 f" {env['torch_threads']} torch threads, {env['openmp_threads']} OpenMP threads")
    errors = {(r["op"], k): v for r in report["rows"] for k, v in r["compile_errors"].items()}
    for (op, mode), err in errors.items():
        lines.append(f"note: {mode} failed for {op}: {err}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops", default=",".join(CASES),
                        help=f"comma-separated ops (default: all of {', '.join(CASES)})")
    parser.add_argument("--shapes", default=None,
                        help="comma-separated ROWSxDIM (default: small shapes that finish in "
                             "about a minute; --large for the issue's target shapes)")
    parser.add_argument("--large", action="store_true",
                        help="use the target shapes (CPU 1048576x64, GPU 1048576x1024)")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--backends", default="auto",
                        help="comma-separated lcengine backends to time (auto, native, triton)")
    parser.add_argument("--compile-modes", default=None,
                        help="comma-separated torch.compile modes, or 'none' (default: 'default' "
                             "on CPU; 'default,max-autotune-no-cudagraphs' on GPU)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--json", dest="json_path", default=None, help="also save the report here")


def run_from_args(args: argparse.Namespace) -> int:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but no CUDA device is available")
    names = [n.strip() for n in args.ops.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown or not names:
        raise ValueError(f"--ops: unknown op(s) {unknown}; choose from {list(CASES)}")
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
        if b != "auto" and unavailable_reason(b, device.type):
            raise ValueError(f"--backends: {b} is not available on {device.type}: "
                             f"{unavailable_reason(b, device.type)}")
    if args.warmup < 0 or args.reps < 1:
        raise ValueError("--warmup must be >= 0 and --reps >= 1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        report = run(names, shapes, DTYPES[args.dtype], device, warmup=args.warmup,
                     reps=args.reps, compile_modes=modes, backends=backends)
    print(format_table(report))
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(report, fh, indent=2)
        print(f"saved {args.json_path}")
    return 0
