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
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from .. import ops
from ..backend import build_info, resolve_backend, unavailable_reason
from ..reference import constraint_loss_ref, distance_penalty_ref, gaussian_kl_ref, latent_adam_ref_

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
                        help=f"comma-separated ops (default: all of {', '.join(CASES)}); "
                             f"'{OPTIMIZER_OP}' times whole latent-optimizer calls (FLOP-based "
                             "table, CPU cases of --optimizer-cases)")
    parser.add_argument("--optimizer-cases", default=None,
                        help="comma-separated optimize_latents cases (default: those sized for "
                             f"the device; all: {', '.join(OPTIMIZER_CASES)})")
    parser.add_argument("--weight-dtypes", default=None,
                        help="optimize_latents critic weight precisions to time: float32, "
                             "bfloat16 (default: float32 on CPU, both on GPU)")
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
    unknown = [n for n in names if n not in CASES and n != OPTIMIZER_OP]
    if unknown or not names:
        raise ValueError(f"--ops: unknown op(s) {unknown}; choose from "
                         f"{list(CASES) + [OPTIMIZER_OP]}")
    optimizer_cases = []
    if OPTIMIZER_OP in names:
        names.remove(OPTIMIZER_OP)
        optimizer_cases = ([c.strip() for c in args.optimizer_cases.split(",") if c.strip()]
                           if args.optimizer_cases else default_optimizer_cases(device.type))
        bad = [c for c in optimizer_cases if c not in OPTIMIZER_CASES]
        if bad or not optimizer_cases:
            raise ValueError(f"--optimizer-cases: unknown case(s) {bad}; choose from "
                             f"{list(OPTIMIZER_CASES)}")
        weight_names = (args.weight_dtypes or ("float32" if device.type == "cpu"
                                               else "float32,bfloat16")).split(",")
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
        if b != "auto" and unavailable_reason(b, device.type):
            raise ValueError(f"--backends: {b} is not available on {device.type}: "
                             f"{unavailable_reason(b, device.type)}")
    if args.warmup < 0 or args.reps < 1:
        raise ValueError("--warmup must be >= 0 and --reps >= 1")
    report = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if names:
            report = run(names, shapes, DTYPES[args.dtype], device, warmup=args.warmup,
                         reps=args.reps, compile_modes=modes, backends=backends)
            print(format_table(report))
        if optimizer_cases:
            opt = run_optimizer(optimizer_cases, device=device, warmup=min(args.warmup, 1),
                                reps=min(args.reps, 5), compile_modes=modes,
                                backends=backends, weight_dtypes=weight_dtypes)
            print(format_optimizer_table(opt))
            report = {**report, "optimizer": opt} if report else {"optimizer": opt}
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(report, fh, indent=2)
        print(f"saved {args.json_path}")
    return 0


# ---------------------------------------------------------------------------------------------
# optimize_latents: whole optimizer calls, FLOP-based (selected with --ops optimize_latents).
# ---------------------------------------------------------------------------------------------

OPTIMIZER_OP = "optimize_latents"


@dataclass
class OptimizerCase:
    """One latent-optimizer workload: B latents of width D, two critics of ``hidden`` widths.

    Thresholds are out of reach (0.999999), so every row takes every step and the contenders do
    the same work; ``steps`` is the number of Adam steps per timed call. A ``converging`` case
    uses reachable thresholds (0.5, half the attributes requested) instead, so rows stop at
    different steps, as in an interactive edit; its GFLOP/s is not reported (work varies).
    """

    name: str
    rows: int
    dim: int
    hidden: tuple
    activation: str
    steps: int
    attributes: int = 8
    embed_dim: int = 32
    compile_step: bool = False  # also time torch.compile of the eager step (small cases only)
    converging: bool = False
    device: str = "cpu"  # the device type the case is sized for


OPTIMIZER_CASES = {c.name: c for c in [
    OptimizerCase("B64_D64_4x256_relu_300steps", 64, 64, (256,) * 4, "relu", 300,
                  compile_step=True),
    OptimizerCase("B64_D64_4x256_relu_300steps_converging", 64, 64, (256,) * 4, "relu", 300,
                  converging=True),
    OptimizerCase("B16384_D64_4x256_relu", 16384, 64, (256,) * 4, "relu", 3),
    OptimizerCase("B16384_D64_4x256_softplus", 16384, 64, (256,) * 4, "softplus", 3),
    OptimizerCase("B1_D1024_4x2048_relu", 1, 1024, (2048,) * 4, "relu", 20),
    OptimizerCase("B1024_D1024_4x2048_relu", 1024, 1024, (2048,) * 4, "relu", 2),
    # GPU (H100/H200): the three rows
    OptimizerCase("gpu_B1M_D1024_4x2048_relu", 2**20, 1024, (2048,) * 4, "relu", 1,
                  compile_step=True, device="cuda"),
    OptimizerCase("gpu_B1M_D64_4x256_relu", 2**20, 64, (256,) * 4, "relu", 3,
                  compile_step=True, device="cuda"),
    OptimizerCase("gpu_B4096_D64_4x256_relu_300steps", 4096, 64, (256,) * 4, "relu", 300,
                  compile_step=True, device="cuda"),
]}


def default_optimizer_cases(device_type: str) -> list:
    return [name for name, c in OPTIMIZER_CASES.items() if c.device == device_type]


class _BenchCritic(torch.nn.Module):
    """A critic following lcengine.method.critics' contract (``layers``, ``activation``,
    optional ``y_embedding`` concatenated after z); defined here because the benchmark layer may
    not import lcengine.method."""

    def __init__(self, dim: int, hidden: tuple, out: int, activation: str,
                 num_attributes: int = 0, embed_dim: int = 0):
        super().__init__()
        self.activation = activation
        self.latent_dim, self.num_attributes = dim, num_attributes if embed_dim else out
        self.y_embedding = torch.nn.Linear(num_attributes, embed_dim) if embed_dim else None
        widths = (dim + embed_dim,) + tuple(hidden) + (out,)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b)
                                          for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, z, y=None):
        act = {"relu": torch.nn.functional.relu, "softplus": torch.nn.functional.softplus,
               "leaky_relu": lambda h: torch.nn.functional.leaky_relu(h, 0.2)}[self.activation]
        h = z if self.y_embedding is None else torch.cat([z, self.y_embedding(y)], 1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = act(h)
        return h.squeeze(1) if self.y_embedding is not None else h


def optimizer_flops_per_step(case: OptimizerCase) -> float:
    """FLOPs of one step: both critics' forward and input-gradient GEMMs (2 per MAC each)."""
    macs = 0
    for first, out in ((case.dim, 1), (case.dim, case.attributes)):
        widths = (first,) + tuple(case.hidden) + (out,)
        macs += sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    return 2.0 * 2.0 * macs * case.rows


def _optimizer_inputs(case: OptimizerCase, seed: int = 0,
                      device: torch.device = torch.device("cpu")) -> dict:
    torch.manual_seed(seed)
    real = _BenchCritic(case.dim, case.hidden, 1, case.activation, case.attributes,
                        case.embed_dim).requires_grad_(False).to(device)
    attr = _BenchCritic(case.dim, case.hidden, case.attributes,
                        case.activation).requires_grad_(False).to(device)
    tau = 0.5 if case.converging else 0.999999
    mask = (torch.rand(case.rows, case.attributes) > 0.5 if case.converging
            else torch.ones(case.rows, case.attributes, dtype=torch.bool))
    return {"z": torch.randn(case.rows, case.dim, device=device),
            "y": (torch.rand(case.rows, case.attributes) > 0.5).float().to(device),
            "mask": mask.to(device), "real": real, "attr": attr,
            "kwargs": dict(steps=case.steps, tau_r=tau, tau_a=tau, lr=0.05, w_dist=0.1)}


def _compiled_dense_loop(x: dict, steps: int, mode: str = "default"):
    """torch.compile of one eager step (critics, loss, autograd input gradient, satisfied
    check, masked Adam) over all rows; the loop of ``steps`` calls it."""
    real, attr, y, mask = x["real"], x["attr"], x["y"], x["mask"]
    kw = x["kwargs"]
    tau_r, tau_a, lr, w_dist = kw["tau_r"], kw["tau_a"], kw["lr"], kw["w_dist"]
    weight = mask.float()
    ones = torch.ones(y.shape[0], device=y.device)

    def step(z, anchor, m, v, t):
        z = z.detach().requires_grad_(True)
        r = real(z, y)
        a = attr(z)
        p_a = torch.sigmoid(a)
        ok = (torch.sigmoid(r) > tau_r) & (torch.where(y > 0.5, p_a > tau_a,
                                                       p_a < 1 - tau_a) | ~mask).all(1)
        loss = (constraint_loss_ref(r, ones, reduction="none")
                + constraint_loss_ref(a, y, weight=weight, reduction="none").sum(1)
                + w_dist * distance_penalty_ref(z, anchor, 1.0, reduction="none"))
        (g,) = torch.autograd.grad(loss.sum(), z)
        g = torch.where(ok.unsqueeze(1), 0.0, g)
        m2 = 0.9 * m + 0.1 * g
        v2 = 0.999 * v + 0.001 * g * g
        upd = lr / (1 - 0.9 ** t) * m2 / (v2.sqrt() / (1 - 0.999 ** t) ** 0.5 + 1e-8)
        keep = ok.unsqueeze(1)
        return (torch.where(keep, z, z - upd).detach(), torch.where(keep, m, m2),
                torch.where(keep, v, v2))

    compiled = torch.compile(step, dynamic=False, mode=mode)
    device = x["z"].device

    def loop():
        z = x["z"].clone()
        m, v = torch.zeros_like(z), torch.zeros_like(z)
        for t in range(1, steps + 1):  # t as a tensor: one graph for every step
            z, m, v = compiled(z, x["z"], m, v, torch.tensor(float(t), device=device))
        return z

    return loop


# The GEMM probe per device: (dtype, n, warmup, reps). On GPU the bf16 peak that the
# bf16-weight rows are judged against.
GEMM_PROBES = {"cpu": (torch.float32, 2048, 2, 5), "cuda": (torch.bfloat16, 8192, 3, 10)}


def gemm_probe(device: torch.device = torch.device("cpu")) -> tuple[float, str]:
    """GFLOP/s of a large square torch.mm on ``device`` (all torch threads on CPU) measured now,
    and what was measured (e.g. "fp32 torch.mm 2048^3")."""
    dtype, n, warmup, reps = GEMM_PROBES[device.type]
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    c = torch.empty(n, n, device=device, dtype=dtype)
    t = measure({"mm": lambda: torch.mm(a, b, out=c)}, Timer(device), warmup=warmup,
                reps=reps)["mm"]
    name = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    return 2.0 * n ** 3 / t / 1e9, f"{name} torch.mm {n}^3"


def _peak_bytes(fn: Callable[[], object], device: torch.device) -> Optional[int]:
    """Peak CUDA memory allocated during one call of ``fn`` beyond what was live before."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def _drop_out_of_memory(contenders: dict, device: torch.device) -> list:
    """Runs each contender once on a GPU and removes those that run out of memory (the eager
    loop's saved activations at B=2^20 may not fit): they are reported, not timed."""
    if device.type != "cuda":
        return []
    failed = []
    for label in list(contenders):
        try:
            contenders[label]()
        except torch.cuda.OutOfMemoryError:
            failed.append(label)
            del contenders[label]
        torch.cuda.empty_cache()
    return failed


def run_optimizer(names: Sequence[str], *, device: torch.device = torch.device("cpu"),
                  warmup: int = 1, reps: int = 5, compile_modes: Sequence[str] = ("default",),
                  backends: Sequence[str] = ("auto",),
                  weight_dtypes: Sequence[torch.dtype] = (torch.float32,),
                  progress: bool = True) -> dict:
    """Times whole optimize_latents calls: lcengine backends (per weight precision) vs the
    eager autograd loop (lcengine.reference.optimize_latents_ref; under bf16 autocast on GPU)
    and, for the cases that ask for it, torch.compile of the eager step (the best of
    ``compile_modes``); interleaved, medians. Adds GFLOP/s and its fraction of a GEMM probe
    from this run (CPU: float32 probe; GPU: bf16 probe), and peak memory on GPU."""
    from ..ops.optimize_latents import optimize_latents
    from ..reference import optimize_latents_ref

    timer = Timer(device)
    gpu = device.type == "cuda"
    probe, probe_name = gemm_probe(device)
    rows_out = []
    for name in names:
        case = OPTIMIZER_CASES[name]
        x = _optimizer_inputs(case, device=device)
        kw = x["kwargs"]

        def eager():
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=gpu):
                return optimize_latents_ref(x["z"], x["y"], x["mask"], x["real"], x["attr"],
                                            1.0, **kw)

        contenders = {"eager": eager}
        compile_errors = {}
        if case.compile_step:
            for mode in compile_modes:
                try:
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=gpu):
                        loop = _compiled_dense_loop(x, case.steps, mode)
                        loop()  # compile outside the timed region

                    def run_compiled(loop=loop):
                        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=gpu):
                            return loop()
                    contenders[f"compile[{mode}]"] = run_compiled
                except Exception as exc:  # reported, not hidden
                    compile_errors[mode] = f"{type(exc).__name__}: {exc}"[:300]
        result, failures = None, []
        for b in backends:
            for wd in weight_dtypes:
                def call(b=b, wd=wd):
                    return optimize_latents(x["z"], x["y"], x["mask"], x["real"], x["attr"],
                                            1.0, backend=b, weight_dtype=wd, **kw)
                try:  # one untimed call names what `b` runs here ("auto": the op's own rule)
                    first = call()
                except torch.cuda.OutOfMemoryError:
                    failures.append(f"lcengine[{b}]")
                    torch.cuda.empty_cache()
                    continue
                result = result or first
                tag = first.backend + ("+bf16" if wd == torch.bfloat16 else "")
                contenders[f"lcengine[{tag}]"] = call
        failures += _drop_out_of_memory(contenders, device)
        if failures:  # said now as well: a case where every lcengine contender failed has no row
            print(f"  {name}: out of GPU memory, not timed: {', '.join(failures)}", flush=True)
        if progress:
            print(f"  timing {name} ({len(contenders)} contenders, {case.steps} steps per "
                  "call)...", flush=True)
        times = measure(contenders, timer, warmup=warmup, reps=reps)
        peaks = {label: _peak_bytes(fn, device) for label, fn in contenders.items()}
        eager_t = times.get("eager")
        flops = None if case.converging else optimizer_flops_per_step(case) * case.steps
        converged = None if result is None else int(result.converged.sum())
        mean_steps = None if result is None else float(result.steps.float().mean())
        compiled = {k: v for k, v in times.items() if k.startswith("compile[")}
        best_compile = min(compiled, key=compiled.get) if compiled else None
        for label, t in times.items():
            if not label.startswith("lcengine["):
                continue
            gflops = None if flops is None else flops / t / 1e9
            compile_t = compiled.get(best_compile)
            peak, eager_peak = peaks[label], peaks["eager"]
            rows_out.append({
                "op": OPTIMIZER_OP, "case": name, "device": device.type, "rows": case.rows,
                "dim": case.dim, "hidden": list(case.hidden), "activation": case.activation,
                "steps_per_call": case.steps, "backend": label[9:-1],
                "eager": "bf16 autocast" if gpu else "float32",
                "best_compile_mode": best_compile,
                "peak_bytes": peak, "eager_peak_bytes": eager_peak,
                "peak_vs_eager": None if not (peak and eager_peak) else peak / eager_peak,
                "time_ms": t * 1e3, "ms_per_step": t * 1e3 / case.steps,
                "eager_ms": None if eager_t is None else eager_t * 1e3,
                "eager_ms_per_step": None if eager_t is None else eager_t * 1e3 / case.steps,
                "compile_ms": None if compile_t is None else compile_t * 1e3,
                "compile_error": "; ".join(f"{m}: {e}" for m, e in compile_errors.items())
                                 or None,
                "GFLOPs": gflops,
                "eager_GFLOPs": None if flops is None or eager_t is None else flops / eager_t / 1e9,
                "gemm_probe_GFLOPs": probe,
                "gemm_probe": probe_name,
                "fraction_of_gemm_probe": None if gflops is None else gflops / probe,
                "speedup_vs_eager": None if eager_t is None else eager_t / t,
                "speedup_vs_compile": None if compile_t is None else compile_t / t,
                "out_of_memory": failures,
                "converged_rows": converged, "mean_steps_per_row": mean_steps,
            })
    return {"environment": _environment(device), "gemm_probe_GFLOPs": probe,
            "gemm_probe": probe_name,
            "settings": {"warmup": warmup, "reps": reps}, "rows": rows_out}


def format_optimizer_table(report: dict) -> str:
    header = (f"{'optimize_latents case':<38} {'backend':<12} {'ms/step':>9} {'eager':>9} "
              f"{'GFLOP/s':>8} {'of GEMM':>8} {'x eager':>8} {'x compile':>10} "
              f"{'mem/eager':>9} {'converged':>10}")
    lines = [header, "-" * len(header)]
    for r in report["rows"]:
        vs_compile = (f"{r['speedup_vs_compile']:>10.2f}" if r["speedup_vs_compile"] is not None
                      else f"{'n/a':>10}")
        gflops = "n/a" if r["GFLOPs"] is None else f"{r['GFLOPs']:.1f}"
        frac = "n/a" if r["GFLOPs"] is None else f"{r['fraction_of_gemm_probe']:.0%}"
        mem = "n/a" if r.get("peak_vs_eager") is None else f"{r['peak_vs_eager']:.2f}"
        eager = "OOM" if r["eager_ms_per_step"] is None else f"{r['eager_ms_per_step']:.3f}"
        vs_eager = "n/a" if r["speedup_vs_eager"] is None else f"{r['speedup_vs_eager']:.2f}"
        lines.append(f"{r['case']:<38} {r['backend']:<12} {r['ms_per_step']:>9.3f} "
                     f"{eager:>9} {gflops:>8} {frac:>8} {vs_eager:>8} {vs_compile} {mem:>9} "
                     f"{r['converged_rows']:>4}/{r['rows']:<5}")
    env = report["environment"]
    eager = report["rows"][0]["eager"] if report["rows"] else "float32"
    lines.append(f"eager: the autograd loop ({eager}); x compile: best torch.compile mode of the "
                 "eager step")
    lines.append(f"GEMM probe ({report['gemm_probe']}) {report['gemm_probe_GFLOPs']:.1f} GFLOP/s; torch "
                 f"{env['torch']}, {env['processor']}, {env['torch_threads']} torch threads, "
                 f"{env['openmp_threads']} OpenMP threads")
    for r in report["rows"]:
        if r["compile_error"]:
            lines.append(f"note: torch.compile failed for {r['case']}: {r['compile_error']}")
    oom = sorted({(r["case"], label) for r in report["rows"] for label in r["out_of_memory"]})
    for case, label in oom:
        lines.append(f"note: {label} ran out of GPU memory on {case} (not timed)")
    return "\n".join(lines)
