# SPDX-License-Identifier: Apache-2.0
"""Whole ``lcengine.optimize_latents`` calls as benchmarked (``lcengine bench --ops
optimize_latents``): FLOP-based rows against a GEMM probe measured in the same run.

Contenders per case, on the same critics and inputs, interleaved:

- ``eager``: :func:`lcengine.reference.optimize_latents_ref`, the autograd loop that compacts
  the active rows every step (under bf16 autocast on GPU);
- ``compile[mode]`` (cases with ``compile_step``): a dense loop of
  ``torch.compile(lcengine.reference.dense_step_ref)``: every row every step, the step number
  passed as a tensor so one graph serves all steps (see :func:`compiled_dense_loop`);
- ``lcengine[backend]`` per backend and critic weight precision.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .. import optimize_latents
from ..reference import CriticMLP, dense_step_ref, optimize_latents_ref
from .cli_args import OPTIMIZER_OP
from .timing import CPU, Timer, environment, gemm_probe, measure_stats, peak_bytes


@dataclass
class OptimizerCase:
    """One latent-optimizer workload: B latents of width D, two critics of ``hidden`` widths.

    Thresholds are out of reach (0.999999), so every row takes every step and the contenders do
    the same work; ``steps`` is the number of Adam steps per timed call. A ``converging`` case
    uses reachable thresholds (0.5, half the attributes requested) instead, so rows stop at
    different steps, as in an interactive edit; its GFLOP/s is not reported (work varies).

    Attributes:
        name: the case's key in :data:`OPTIMIZER_CASES`.
        rows, dim: ``B`` and ``D``.
        hidden: hidden widths of both critics.
        activation: the critics' nonlinearity.
        steps: Adam steps per timed call.
        attributes: ``A``, the attribute critic's outputs and the width of ``y``.
        embed_dim: width of the realism critic's attribute embedding.
        compile_step: also time the torch.compile contender (sized so compiling is affordable).
        converging: reachable thresholds (see above).
        device: the device type the case is sized for.
    """

    name: str
    rows: int
    dim: int
    hidden: tuple
    activation: str
    steps: int
    attributes: int = 8
    embed_dim: int = 32
    compile_step: bool = False
    converging: bool = False
    device: str = "cpu"


OPTIMIZER_CASES = {
    c.name: c
    for c in [
        OptimizerCase(
            "B64_D64_4x256_relu_300steps", 64, 64, (256,) * 4, "relu", 300, compile_step=True
        ),
        OptimizerCase(
            "B64_D64_4x256_relu_300steps_converging",
            64,
            64,
            (256,) * 4,
            "relu",
            300,
            converging=True,
        ),
        OptimizerCase("B16384_D64_4x256_relu", 16384, 64, (256,) * 4, "relu", 3),
        OptimizerCase("B16384_D64_4x256_softplus", 16384, 64, (256,) * 4, "softplus", 3),
        OptimizerCase("B1_D1024_4x2048_relu", 1, 1024, (2048,) * 4, "relu", 20),
        OptimizerCase("B1024_D1024_4x2048_relu", 1024, 1024, (2048,) * 4, "relu", 2),
        # GPU: 2^20 latents with wide (1024, 4x2048) and narrow (64, 4x256) critics, and a
        # 300-step interactive batch of 4096
        OptimizerCase(
            "gpu_B1M_D1024_4x2048_relu",
            2**20,
            1024,
            (2048,) * 4,
            "relu",
            1,
            compile_step=True,
            device="cuda",
        ),
        OptimizerCase(
            "gpu_B1M_D64_4x256_relu",
            2**20,
            64,
            (256,) * 4,
            "relu",
            3,
            compile_step=True,
            device="cuda",
        ),
        OptimizerCase(
            "gpu_B4096_D64_4x256_relu_300steps",
            4096,
            64,
            (256,) * 4,
            "relu",
            300,
            compile_step=True,
            device="cuda",
        ),
    ]
}


def default_optimizer_cases(device_type: str) -> list:
    """The cases sized for ``device_type`` ("cpu" or "cuda"), in table order."""
    return [name for name, c in OPTIMIZER_CASES.items() if c.device == device_type]


def optimizer_flops_per_step(case: OptimizerCase) -> float:
    """FLOPs of one step: both critics' forward and input-gradient GEMMs (2 per MAC each)."""
    macs = 0
    for first, out in ((case.dim, 1), (case.dim, case.attributes)):
        widths = (first,) + tuple(case.hidden) + (out,)
        macs += sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    return 2.0 * 2.0 * macs * case.rows


def optimizer_inputs(case: OptimizerCase, seed: int = 0, device: torch.device = CPU) -> dict:
    """Critics and inputs of ``case``, drawn from ``seed``.

    Returns:
        ``z`` [B, D], ``y`` [B, A] (0/1 floats), ``mask`` [B, A] bool, ``real`` and ``attr``
        (:class:`lcengine.reference.CriticMLP`, weights frozen), ``sigma_bar`` and ``kwargs``:
        the keyword settings every contender gets (steps, thresholds, weights, Adam's).
    """
    torch.manual_seed(seed)
    real = (
        CriticMLP(case.dim, case.hidden, 1, case.activation, case.attributes, case.embed_dim)
        .requires_grad_(False)
        .to(device)
    )
    attr = (
        CriticMLP(case.dim, case.hidden, case.attributes, case.activation)
        .requires_grad_(False)
        .to(device)
    )
    tau = 0.5 if case.converging else 0.999999
    mask = (
        torch.rand(case.rows, case.attributes) > 0.5
        if case.converging
        else torch.ones(case.rows, case.attributes, dtype=torch.bool)
    )  # [B, A]
    return {
        "z": torch.randn(case.rows, case.dim, device=device),  # [B, D]
        "y": (torch.rand(case.rows, case.attributes) > 0.5).float().to(device),  # [B, A]
        "mask": mask.to(device),
        "real": real,
        "attr": attr,
        "sigma_bar": 1.0,
        "kwargs": dict(
            steps=case.steps,
            tau_r=tau,
            tau_a=tau,
            lr=0.05,
            w_dist=0.1,
            w_realism=1.0,
            w_attr=1.0,
            betas=(0.9, 0.999),
            eps=1e-8,
        ),
    }


def _step_settings(x: dict) -> dict:
    """The keyword hyper-parameters of :func:`dense_step_ref` (every setting but ``steps``)."""
    return {k: v for k, v in x["kwargs"].items() if k != "steps"}


def autograd_tracing() -> contextlib.AbstractContextManager:
    """Lets Dynamo trace ``torch.autograd.grad`` (``trace_autograd_ops``) so the step compiles
    as one graph; a no-op on torch versions without that option (the step then compiles with
    a graph break around the gradient)."""
    config = torch._dynamo.config
    if hasattr(config, "trace_autograd_ops"):
        return config.patch(trace_autograd_ops=True)
    return contextlib.nullcontext()


def dense_loop(step: Callable, x: dict, steps: int) -> Callable[[], torch.Tensor]:
    """A loop of ``steps`` calls of ``step`` (:func:`dense_step_ref` or a compiled twin) over
    every row, from ``x["z"]`` with zero Adam state.

    The step number goes in as a 0-d float32 tensor on the latents' device, made before any
    timed call, so a compiled step sees one input signature for every step.

    Returns:
        A callable that runs the loop and returns the final latents. # [B, D]
    """
    z0, y, mask, real, attr = x["z"], x["y"], x["mask"], x["real"], x["attr"]
    settings = _step_settings(x)
    step_numbers = [torch.tensor(float(t), device=z0.device) for t in range(1, steps + 1)]

    def loop() -> torch.Tensor:
        z = z0.clone()  # [B, D]
        m, v = torch.zeros_like(z), torch.zeros_like(z)  # [B, D] x2
        for t in step_numbers:
            z, m, v, _ = step(z, z0, m, v, t, y, mask, real, attr, x["sigma_bar"], **settings)
        return z

    return loop


def compiled_dense_loop(
    x: dict, steps: int, mode: str = "default", fullgraph: bool = False
) -> Callable[[], torch.Tensor]:
    """The torch.compile contender: :func:`dense_loop` of
    ``torch.compile(lcengine.reference.dense_step_ref, dynamic=False, mode=mode)``.

    The step function is the reference's own (critics, loss, autograd input gradient,
    stopping rule, masked Adam); only its settings come from the case. Every call of the
    returned loop runs under :func:`autograd_tracing`. Compilation happens on the first call.
    """
    compiled = torch.compile(
        dense_step_ref, dynamic=False, fullgraph=fullgraph, mode=None if mode == "default" else mode
    )
    inner = dense_loop(compiled, x, steps)

    def loop() -> torch.Tensor:
        with autograd_tracing():
            return inner()

    return loop


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


def run_optimizer(
    names: Sequence[str],
    *,
    device: torch.device = CPU,
    warmup: int = 1,
    reps: int = 5,
    compile_modes: Sequence[str] = ("default",),
    backends: Sequence[str] = ("auto",),
    weight_dtypes: Sequence[torch.dtype] = (torch.float32,),
    progress: bool = True,
) -> dict:
    """Times whole optimize_latents calls of the cases ``names``.

    Contenders: lcengine backends (per critic weight precision), the eager autograd loop
    (:func:`lcengine.reference.optimize_latents_ref`; under bf16 autocast on GPU) and, for the
    cases with ``compile_step``, :func:`compiled_dense_loop` (the best of ``compile_modes``);
    interleaved, medians. Each row adds GFLOP/s and its fraction of a GEMM probe from this run
    (CPU: float32 probe; GPU: bf16 probe), the spread of its time and peak memory on GPU.

    Returns:
        A JSON-serialisable report: ``environment``, ``gemm_probe_GFLOPs``, ``gemm_probe``,
        ``settings`` and one row per (case, lcengine contender).
    """
    timer = Timer(device)
    gpu = device.type == "cuda"
    probe, probe_name = gemm_probe(device)
    rows_out = []
    for name in names:
        case = OPTIMIZER_CASES[name]
        x = optimizer_inputs(case, device=device)
        kw = x["kwargs"]

        def eager(x=x, kw=kw):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=gpu):
                return optimize_latents_ref(
                    x["z"], x["y"], x["mask"], x["real"], x["attr"], x["sigma_bar"], **kw
                )

        contenders = {"eager": eager}
        compile_errors = {}
        if case.compile_step:
            for mode in compile_modes:
                try:
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=gpu):
                        loop = compiled_dense_loop(x, case.steps, mode)
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

                def call(b=b, wd=wd, x=x, kw=kw):
                    return optimize_latents(
                        x["z"],
                        x["y"],
                        x["mask"],
                        x["real"],
                        x["attr"],
                        x["sigma_bar"],
                        backend=b,
                        weight_dtype=wd,
                        **kw,
                    )

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
            print(
                f"  timing {name} ({len(contenders)} contenders, {case.steps} steps per call)...",
                flush=True,
            )
        stats = measure_stats(contenders, timer, warmup=warmup, reps=reps)
        times = {label: s.median for label, s in stats.items()}
        peaks = {label: peak_bytes(fn, device) for label, fn in contenders.items()}
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
            peak, eager_peak = peaks[label], peaks.get("eager")
            rows_out.append(
                {
                    "op": OPTIMIZER_OP,
                    "case": name,
                    "device": device.type,
                    "rows": case.rows,
                    "dim": case.dim,
                    "hidden": list(case.hidden),
                    "activation": case.activation,
                    "steps_per_call": case.steps,
                    "backend": label[9:-1],
                    "eager": "bf16 autocast" if gpu else "float32",
                    "best_compile_mode": best_compile,
                    "peak_bytes": peak,
                    "eager_peak_bytes": eager_peak,
                    "peak_vs_eager": None if not (peak and eager_peak) else peak / eager_peak,
                    "time_ms": t * 1e3,
                    "ms_per_step": t * 1e3 / case.steps,
                    "spread": stats[label].as_ms(),
                    "eager_ms": None if eager_t is None else eager_t * 1e3,
                    "eager_ms_per_step": None if eager_t is None else eager_t * 1e3 / case.steps,
                    "compile_ms": None if compile_t is None else compile_t * 1e3,
                    "compile_error": "; ".join(f"{m}: {e}" for m, e in compile_errors.items())
                    or None,
                    "flops_per_call": flops,
                    "GFLOPs": gflops,
                    "eager_GFLOPs": None
                    if flops is None or eager_t is None
                    else flops / eager_t / 1e9,
                    "gemm_probe_GFLOPs": probe,
                    "gemm_probe": probe_name,
                    "fraction_of_gemm_probe": None if gflops is None else gflops / probe,
                    "speedup_vs_eager": None if eager_t is None else eager_t / t,
                    "speedup_vs_compile": None if compile_t is None else compile_t / t,
                    "out_of_memory": failures,
                    "converged_rows": converged,
                    "mean_steps_per_row": mean_steps,
                }
            )
    return {
        "environment": environment(device),
        "gemm_probe_GFLOPs": probe,
        "gemm_probe": probe_name,
        "settings": {"warmup": warmup, "reps": reps, "compile_modes": list(compile_modes)},
        "rows": rows_out,
    }
