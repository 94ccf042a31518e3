# SPDX-License-Identifier: Apache-2.0
"""Training steps per second (``lcengine bench --ops fit``): the realism critic's WGAN-GP step,
the attribute critic's step and the actor's step of ``ConstraintTrainer``.

Contenders per (case, step), same networks (own copies), same batch, each step = gradients +
``Adam.step()`` as the trainer does, timed in alternating blocks (:func:`.timing.measure_stats`):

- ``eager``: today's math through autograd (:mod:`lcengine.reference.training`; the realism
  critic's penalty through a double backward, ``create_graph=True``);
- ``compile[mode]``: ``torch.compile`` of that function. aot_autograd has no double backward, so
  the realism step is refused; the row then says "refused" with the error's first line, and
  the same function is tried again with Dynamo tracing ``torch.autograd.grad``
  (``compile[mode]+trace_autograd_ops``, :func:`.optimizer.autograd_tracing`);
- ``hand``: the hand-derived step (:mod:`lcengine.method.steps`: explicit forward/backward
  matmuls, no autograd graph);
- ``hand+compile[mode]``: the same kernel under ``torch.compile``.

Ratios: ``x eager`` = eager's median / the row's median; ``x compile`` = the fastest timed
compile contender of the eager math / the row's median.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ..method.critics import Actor, AttributeCritic, RealismCritic
from ..method.steps import actor_step_grads, apply_grads, attribute_step_grads, realism_step_grads
from ..reference import actor_step_grads_ref, attribute_step_grads_ref, realism_step_grads_ref
from .cli_args import FIT_OP, FIT_STEPS
from .optimizer import autograd_tracing
from .timing import CPU, Timer, environment, measure_stats

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


FIT_CASES = {
    c.name: c
    for c in [
        FitCase("demo_B128_D16_4x256_relu", 128, 16, (256,) * 4, cpu_thread_sweep=True),
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


def _updater(net: torch.nn.Module, grads: Callable, adam: dict) -> Callable[[], None]:
    """One training step of ``net``: ``grads(net)``, set as ``.grad``, ``Adam.step()``."""
    opt = torch.optim.Adam(net.parameters(), **adam)

    def update() -> None:
        apply_grads(net, grads(net))
        opt.step()

    return update


def step_contenders(
    step: str, x: dict, compile_modes: Sequence[str] = ("default",)
) -> tuple[dict, dict]:
    """The timed callables of one step and the compile refusals.

    Every contender trains its own copy of the network (the critics the actor reads are shared
    and frozen). Compiled contenders are compiled here (their first call), outside any timing.

    Returns:
        ``(contenders, refused)``: label -> callable; label -> first line of the error.
    """
    key, ref_fn, ref, hand, adam = _grad_fns(step, x)
    # Inductor's CPU code fixes its OpenMP thread count when it is generated: compile afresh
    # under the current torch thread count.
    torch._dynamo.reset()
    base = x[key]
    contenders: dict[str, Callable[[], None]] = {}
    refused: dict[str, str] = {}

    def add(label: str, grads: Callable, context: Callable = None) -> None:
        update = _updater(copy.deepcopy(base), grads, adam)
        if context is not None:
            plain = update

            def update() -> None:
                with context():
                    plain()

        try:
            update()  # compiles a compiled contender; a refusal raises here
        except Exception as exc:  # reported, not hidden
            refused[label] = first_line(exc)
            return
        contenders[label] = update

    def compiled(mode: str) -> Callable:
        fn = torch.compile(ref_fn, dynamic=False, mode=None if mode == "default" else mode)
        return lambda net: ref(net, fn)

    add("eager", lambda net: ref(net, ref_fn))
    for mode in compile_modes:
        label = f"compile[{mode}]"
        add(label, compiled(mode))
        if label in refused:  # the double backward: let Dynamo trace torch.autograd.grad
            torch._dynamo.reset()  # else the refused frame's cache entry answers again
            add(f"{label}+trace_autograd_ops", compiled(mode), autograd_tracing)
    add("hand", lambda net: hand(net, False))
    if compile_modes:
        add("hand+compile[default]", lambda net: hand(net, True))
    return contenders, refused


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
                    contenders, refused = step_contenders(step, x, compile_modes)
                    stats = measure_stats(contenders, timer, warmup=case_warmup, reps=case_reps)
                    rows += fit_rows(case.name, step, stats, refused, threads=n)
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
        "rows": rows,
    }


def fit_rows(
    case: str, step: str, stats: dict, refused: dict, threads: Optional[int] = None
) -> list[dict]:
    """Report rows of one (case, threads, step) from each contender's :class:`.timing.Stats`
    and the refusals: ratios are computed here, from the medians."""
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
                "error": err,
            }
        )
    return rows


def format_fit_table(report: dict) -> str:
    """The steps/s table of a :func:`run_fit` report, refusals as notes below."""
    header = (
        f"{'fit case':<30} {'thr':>3} {'step':<10} {'contender':<38} {'ms/step':>9} "
        f"{'steps/s':>9} {'x eager':>8} {'x compile':>10}"
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
            f"{ratio(r['speedup_vs_compile']):>10}"
        )
    env = report["environment"]
    lines.append(
        "step = gradients + Adam.step(); eager: autograd (realism: double backward); hand: "
        "lcengine.method.steps; x compile: against the fastest compiled eager contender"
    )
    lines.append(
        f"torch {env['torch']}, {env.get('device_name', env['cpu_name'])}, "
        f"{env['torch_threads']} torch threads by default (thr: the threads of each row)"
    )
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
]
