# SPDX-License-Identifier: Apache-2.0
"""Training steps per second (``lcengine bench --ops fit``): the realism critic's WGAN-GP step,
the attribute critic's step and the actor's step of ``ConstraintTrainer``.

Contenders per (case, step), same networks (own copies), same batch, each step = gradients +
``Adam.step()``, timed in alternating blocks (:func:`.timing.measure_stats`):

- ``eager``: the math through autograd (:mod:`lcengine.reference.training`; the realism
  critic's penalty through a double backward, ``create_graph=True``) and ``torch.optim.Adam``
  with torch's default implementation (per-tensor on CPU), the plain PyTorch loop;
- ``eager+fused_adam``: the same with ``Adam(fused=True)``, what the Adam kernel alone gives;
- ``compile[mode]``: ``torch.compile`` of that function. aot_autograd has no double backward, so
  the realism step is refused; the row then says "refused" with the error's first line, and
  the same function is tried again with Dynamo tracing ``torch.autograd.grad``
  (``compile[mode]+trace_autograd_ops``, :func:`.optimizer.autograd_tracing`);
- ``hand``: the trainer's step: the hand-derived gradients (:mod:`lcengine.method.steps`:
  explicit forward/backward matmuls, no autograd graph) and ``Adam(fused=True)``;
- ``hand+compile[mode]``: the same kernel under ``torch.compile``;
- ``hand+bf16_autocast``: ``hand`` under ``torch.autocast`` to bfloat16 (``TrainingConfig(
  autocast="bf16")``); on CUDA for every case, on CPU only for cases with ``cpu_autocast``
  (without native bfloat16 arithmetic it is an order of magnitude slower there).

Ratios: ``x eager`` = eager's median / the row's median; ``x compile`` = the fastest timed
compile contender of the eager math / the row's median. Every row also gives the step's matrix
FLOPs (counted once with ``torch.utils.flop_counter`` on the hand-derived gradients; the
contenders compute the same products, autograd's double backward some more), their rate, and
that rate as a fraction of a float32 GEMM probe measured in the same run at the row's thread
count: the share of the machine's matrix throughput a step reaches.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ..method.critics import Actor, AttributeCritic, RealismCritic
from ..method.steps import actor_step_grads, apply_grads, attribute_step_grads, realism_step_grads
from ..method.training import fused_adam_available
from ..reference import actor_step_grads_ref, attribute_step_grads_ref, realism_step_grads_ref
from .cli_args import FIT_OP, FIT_STEPS
from .optimizer import autograd_tracing
from .timing import CPU, Timer, environment, gemm_probe, measure_stats

GP_WEIGHT = 10.0  # TrainingConfig's defaults
LAMBDA_DIST = 0.1
ATTRIBUTE_WEIGHT = 1.0


@dataclass(frozen=True)
class FitCase:
    """One training workload: the trainer's batch layout at one network size.

    Attributes:
        name: the key in :data:`FIT_CASES`.
        batch: rows per block (realism: 3 blocks + ``batch`` penalty rows; actor: 2 blocks).
        dim: latent width D.
        hidden: hidden widths of all three networks.
        attributes: A.
        embed_dim: width of the attribute embedding (realism critic, actor).
        attribute_batch: rows of an attribute-critic batch.
        cpu_reps: at most this many timed calls per contender on CPU (None: ``--reps``).
        cpu_thread_sweep: on CPU, by default time it at one thread and at all of torch's
            threads (``lcengine fit --threads`` defaults to 1); else at torch's threads only.
        cpu_autocast: on CPU, time the ``hand+bf16_autocast`` contender too.
    """

    name: str
    batch: int
    dim: int
    hidden: tuple
    attributes: int = 10
    embed_dim: int = 32
    attribute_batch: int = 256
    cpu_reps: Optional[int] = None
    cpu_thread_sweep: bool = False
    cpu_autocast: bool = False


FIT_CASES = {
    c.name: c
    for c in [
        FitCase(
            "demo_B128_D16_4x256_relu",
            128,
            16,
            (256,) * 4,
            cpu_thread_sweep=True,
            cpu_autocast=True,
        ),
        FitCase("paper_B128_D1024_4x2048_relu", 128, 1024, (2048,) * 4, cpu_reps=3),
    ]
}


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (what a refused row reports)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def fit_inputs(case: FitCase, device: torch.device = CPU, seed: int = 0) -> dict:
    """The three networks (ReLU, trainer init) and one batch of each step, drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    d, a, b = case.dim, case.attributes, case.batch

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(device)

    def bits(*shape):
        return (torch.rand(*shape, generator=gen) > 0.5).float().to(device)

    y_real, y_mis = bits(b, a), bits(b, a)
    return {
        "realism": RealismCritic(d, a, case.hidden, case.embed_dim).to(device),
        "attribute": AttributeCritic(d, a, case.hidden).to(device),
        "actor": Actor(d, a, case.hidden, case.embed_dim).to(device),
        "realism_batch": (
            randn(b, d),
            randn(b, d),
            randn(b, d),
            y_real,
            y_mis,
            (y_mis != y_real).any(dim=1).float(),
            torch.rand(b, 1, generator=gen).to(device),
        ),
        "attribute_batch": (randn(case.attribute_batch, d), bits(case.attribute_batch, a)),
        "actor_batch": (randn(2 * b, d), bits(2 * b, a), torch.full((d,), 0.5, device=device)),
    }


def _grad_fns(step: str, x: dict) -> tuple:
    """``(key of the trained network in x, its autograd twin, ref, hand, Adam kwargs)``:
    ``ref(net, fn)`` runs the twin (or a compiled ``fn`` of it) on the step's batch,
    ``hand(net, compiled)`` the hand-derived step; both return the gradients."""
    if step == "realism":

        def ref(net, fn):
            return fn(net, *x["realism_batch"], gp_weight=GP_WEIGHT)[0]

        def hand(net, compiled):
            b = x["realism_batch"]
            return realism_step_grads(net, *b, gp_weight=GP_WEIGHT, compiled=compiled).grads

        return "realism", realism_step_grads_ref, ref, hand, {"lr": 1e-4, "betas": (0.0, 0.9)}
    if step == "attribute":

        def ref(net, fn):
            return fn(net, *x["attribute_batch"])[0]

        def hand(net, compiled):
            return attribute_step_grads(net, *x["attribute_batch"], compiled=compiled).grads

        return "attribute", attribute_step_grads_ref, ref, hand, {"lr": 1e-3}
    if step == "actor":
        kw = dict(attribute_weight=ATTRIBUTE_WEIGHT, lambda_dist=LAMBDA_DIST)

        def ref(net, fn):
            return fn(net, x["realism"], x["attribute"], *x["actor_batch"], **kw)[0]

        def hand(net, compiled):
            return actor_step_grads(
                net, x["realism"], x["attribute"], *x["actor_batch"], **kw, compiled=compiled
            ).grads

        return "actor", actor_step_grads_ref, ref, hand, {"lr": 1e-4, "betas": (0.0, 0.9)}
    raise ValueError(f"unknown step {step!r}; choose from {FIT_STEPS}")


def _updater(
    net: torch.nn.Module, grads: Callable, adam: dict, fused: bool = False
) -> Callable[[], None]:
    """One training step of ``net``: ``grads(net)``, set as ``.grad``, ``Adam.step()``
    (``fused``: Adam's fused kernel, where the device has one)."""
    fused = fused and fused_adam_available(next(net.parameters()).device)
    opt = torch.optim.Adam(net.parameters(), **adam, fused=fused or None)

    def update() -> None:
        apply_grads(net, grads(net))
        opt.step()

    return update


def step_contenders(
    step: str, x: dict, compile_modes: Sequence[str] = ("default",), autocast: bool = False
) -> tuple[dict, dict]:
    """The timed callables of one step and the compile refusals (``autocast``: with the
    ``hand+bf16_autocast`` contender).

    Every contender trains its own copy of the network (the critics the actor reads are shared
    and frozen). Compiled contenders are compiled here (their first call), outside any timing.

    Returns:
        ``(contenders, refused, first_call_s)``: label -> callable; label -> first line of the
        error; label -> seconds of the contender's first call (for compiled contenders, the
        compile time).
    """
    key, ref_fn, ref, hand, adam = _grad_fns(step, x)
    # Inductor's CPU code fixes its OpenMP thread count when it is generated: compile afresh
    # under the current torch thread count.
    torch._dynamo.reset()
    base = x[key]
    contenders: dict[str, Callable[[], None]] = {}
    refused: dict[str, str] = {}
    first_call_s: dict[str, float] = {}

    def add(label: str, grads: Callable, context: Callable = None, fused: bool = False) -> None:
        update = _updater(copy.deepcopy(base), grads, adam, fused)
        if context is not None:
            plain = update

            def update() -> None:
                with context():
                    plain()

        t0 = time.perf_counter()
        try:
            update()  # compiles a compiled contender; a refusal raises here
        except Exception as exc:  # reported, not hidden
            refused[label] = first_line(exc)
            return
        first_call_s[label] = time.perf_counter() - t0
        contenders[label] = update

    def compiled(mode: str) -> Callable:
        fn = torch.compile(ref_fn, dynamic=False, mode=None if mode == "default" else mode)
        return lambda net: ref(net, fn)

    add("eager", lambda net: ref(net, ref_fn))
    add("eager+fused_adam", lambda net: ref(net, ref_fn), fused=True)
    for mode in compile_modes:
        label = f"compile[{mode}]"
        add(label, compiled(mode))
        if label in refused:  # the double backward: let Dynamo trace torch.autograd.grad
            torch._dynamo.reset()  # else the refused frame's cache entry answers again
            add(f"{label}+trace_autograd_ops", compiled(mode), autograd_tracing)
    add("hand", lambda net: hand(net, False), fused=True)
    if compile_modes:
        add("hand+compile[default]", lambda net: hand(net, True), fused=True)
    if autocast:
        device_type = next(base.parameters()).device.type

        def bf16() -> torch.autocast:
            return torch.autocast(device_type, dtype=torch.bfloat16)

        add("hand+bf16_autocast", lambda net: hand(net, False), bf16, fused=True)
    return contenders, refused, first_call_s


def step_flops(step: str, x: dict) -> int:
    """Matrix FLOPs of one step's gradients, counted on the hand-derived step
    (``torch.utils.flop_counter``: matmuls, linears, their transposes)."""
    from torch.utils.flop_counter import FlopCounterMode

    key, _, _, hand, _ = _grad_fns(step, x)
    net = copy.deepcopy(x[key])
    with FlopCounterMode(display=False) as counter:
        hand(net, False)
    return int(counter.get_total_flops())


def run_fit(
    cases: Sequence,
    *,
    device: torch.device = CPU,
    steps: Sequence[str] = FIT_STEPS,
    warmup: int = 3,
    reps: int = 15,
    compile_modes: Sequence[str] = ("default",),
    threads: Optional[Sequence[int]] = None,
    progress: bool = True,
) -> dict:
    """Times the trainer's steps of ``cases`` (names in :data:`FIT_CASES` or :class:`FitCase`).

    Args:
        threads: torch thread counts to time every case at (None: torch's current count, and
            on CPU also 1 for the cases with ``cpu_thread_sweep``); torch's count is restored.

    Returns:
        A JSON-serialisable report: ``environment``, ``settings``, ``cases`` and one row per
        (case, threads, step, contender), timed or refused.
    """
    timer = Timer(device)
    rows, described = [], []
    probes: dict[int, tuple[float, str]] = {}  # threads -> float32 GEMM probe
    previous = torch.get_num_threads()
    try:
        for case in cases:
            case = FIT_CASES[case] if isinstance(case, str) else case
            capped = device.type == "cpu" and case.cpu_reps is not None and case.cpu_reps < reps
            case_reps = case.cpu_reps if capped else reps
            case_warmup = min(warmup, 1) if capped else warmup
            counts = list(threads) if threads else [previous]
            if threads is None and device.type == "cpu" and case.cpu_thread_sweep:
                counts = sorted({1, previous})
            for n in counts:
                if n not in probes:
                    torch.set_num_threads(n)
                    probes[n] = gemm_probe(device, torch.float32)
            described.append(
                {
                    "case": case.name,
                    "batch": case.batch,
                    "dim": case.dim,
                    "hidden": list(case.hidden),
                    "attributes": case.attributes,
                    "embed_dim": case.embed_dim,
                    "attribute_batch": case.attribute_batch,
                    "warmup": case_warmup,
                    "reps": case_reps,
                    "threads": counts,
                }
            )
            x = fit_inputs(case, device)
            for n in counts:
                torch.set_num_threads(n)
                for step in steps:
                    if progress:
                        print(f"  {case.name} {step}, {n} threads: timing...", flush=True)
                    autocast = device.type == "cuda" or case.cpu_autocast
                    contenders, refused, first = step_contenders(step, x, compile_modes, autocast)
                    stats = measure_stats(contenders, timer, warmup=case_warmup, reps=case_reps)
                    rows += fit_rows(
                        case.name,
                        step,
                        stats,
                        refused,
                        threads=n,
                        flops=step_flops(step, x),
                        probe=probes[n],
                        first_call_s=first,
                    )
    finally:
        torch.set_num_threads(previous)
    return {
        "environment": environment(device),
        "settings": {
            "warmup": warmup,
            "reps": reps,
            "compile_modes": list(compile_modes),
            "steps": list(steps),
            "gp_weight": GP_WEIGHT,
            "lambda_dist": LAMBDA_DIST,
            "attribute_weight": ATTRIBUTE_WEIGHT,
        },
        "cases": described,
        "gemm_probe_GFLOPs": {str(n): p[0] for n, p in probes.items()},
        "gemm_probe": next(iter(probes.values()))[1] if probes else None,
        "rows": rows,
    }


def fit_rows(
    case: str,
    step: str,
    stats: dict,
    refused: dict,
    threads: Optional[int] = None,
    flops: Optional[int] = None,
    probe: Optional[tuple[float, str]] = None,
    first_call_s: Optional[dict] = None,
) -> list[dict]:
    """Report rows of one (case, threads, step) from each contender's :class:`.timing.Stats`
    and the refusals: ratios are computed here, from the medians; ``flops`` (the step's
    matrix FLOPs) and ``probe`` (``gemm_probe``'s result at these threads) add the rate and
    its fraction of the probe; ``first_call_s`` each contender's first call (compile time)."""
    threads = torch.get_num_threads() if threads is None else threads
    times = {label: s.median for label, s in stats.items()}
    eager_t = times.get("eager")
    compiled = {k: v for k, v in times.items() if k.startswith("compile[")}
    best_compile = min(compiled, key=compiled.get) if compiled else None
    compile_t = compiled.get(best_compile)
    rows = []
    for label, t in times.items():
        rows.append(
            {
                "op": FIT_OP,
                "case": case,
                "threads": threads,
                "step": step,
                "contender": label,
                "status": "timed",
                "time_ms": t * 1e3,
                "steps_per_s": 1.0 / t,
                "spread": stats[label].as_ms(),
                "eager_ms": None if eager_t is None else eager_t * 1e3,
                "best_compile": best_compile,
                "compile_ms": None if compile_t is None else compile_t * 1e3,
                "speedup_vs_eager": None if eager_t is None else eager_t / t,
                "speedup_vs_compile": None if compile_t is None else compile_t / t,
                "first_call_s": (first_call_s or {}).get(label),
                "gflop_per_step": None if flops is None else flops / 1e9,
                "GFLOPs": None if flops is None else flops / t / 1e9,
                "gemm_probe_GFLOPs": None if probe is None else probe[0],
                "fraction_of_gemm_probe": (
                    None if flops is None or probe is None else flops / t / 1e9 / probe[0]
                ),
                "error": None,
            }
        )
    for label, err in refused.items():
        rows.append(
            {
                "op": FIT_OP,
                "case": case,
                "threads": threads,
                "step": step,
                "contender": label,
                "status": "refused",
                "time_ms": None,
                "steps_per_s": None,
                "spread": None,
                "eager_ms": None if eager_t is None else eager_t * 1e3,
                "best_compile": best_compile,
                "compile_ms": None if compile_t is None else compile_t * 1e3,
                "speedup_vs_eager": None,
                "speedup_vs_compile": None,
                "gflop_per_step": None if flops is None else flops / 1e9,
                "GFLOPs": None,
                "gemm_probe_GFLOPs": None if probe is None else probe[0],
                "fraction_of_gemm_probe": None,
                "error": err,
            }
        )
    return rows


def _pct(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}%"


def format_fit_table(report: dict) -> str:
    """The steps/s table of a :func:`run_fit` report, refusals as notes below."""
    header = (
        f"{'fit case':<30} {'thr':>3} {'step':<10} {'contender':<38} {'ms/step':>9} "
        f"{'steps/s':>9} {'x eager':>8} {'x compile':>10} {'GFLOP/s':>8} {'of GEMM':>8}"
    )
    lines = [header, "-" * len(header)]

    def ratio(v: Optional[float]) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    for r in report["rows"]:
        if r["status"] != "timed":
            lines.append(
                f"{r['case']:<30} {r['threads']:>3} {r['step']:<10} {r['contender']:<38} "
                f"{'refused':>9}"
            )
            continue
        lines.append(
            f"{r['case']:<30} {r['threads']:>3} {r['step']:<10} {r['contender']:<38} "
            f"{r['time_ms']:>9.3f} {r['steps_per_s']:>9.1f} {ratio(r['speedup_vs_eager']):>8} "
            f"{ratio(r['speedup_vs_compile']):>10} {ratio(r.get('GFLOPs')):>8} "
            f"{_pct(r.get('fraction_of_gemm_probe')):>8}"
        )
    env = report["environment"]
    lines.append(
        "step = gradients + Adam.step(); eager: autograd (realism: double backward) and "
        "torch's default Adam; hand: lcengine.method.steps and Adam(fused=True), the trainer's "
        "step; x compile: against the fastest compiled eager contender"
    )
    probes = report.get("gemm_probe_GFLOPs") or {}
    if probes:
        lines.append(
            "GFLOP/s: the step's matrix FLOPs (counted on the hand step) / its time; of GEMM: "
            f"that rate / the {report.get('gemm_probe')} probe ("
            + ", ".join(f"{v:.1f} GFLOP/s at {k} threads" for k, v in probes.items())
            + ")"
        )
    lines.append(
        f"torch {env['torch']}, {env.get('device_name', env['cpu_name'])}, "
        f"{env['torch_threads']} torch threads by default (thr: the threads of each row)"
    )
    firsts = [
        f"{r['contender']} {r['step']} {r['first_call_s']:.1f} s ({r['case']}, {r['threads']} thr)"
        for r in report["rows"]
        if "compile" in r["contender"] and r.get("first_call_s") is not None
    ]
    if firsts:
        lines.append("first call, compile included: " + "; ".join(firsts))
    for r in report["rows"]:
        if r["status"] == "refused":
            lines.append(
                f"note: {r['contender']} refused {r['case']} {r['step']} "
                f"({r['threads']} threads): {r['error']}"
            )
    return "\n".join(lines)


__all__ = [
    "FIT_CASES",
    "FitCase",
    "first_line",
    "fit_inputs",
    "fit_rows",
    "format_fit_table",
    "run_fit",
    "step_contenders",
    "step_flops",
]
