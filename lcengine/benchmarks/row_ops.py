# SPDX-License-Identifier: Apache-2.0
"""The memory-bound row ops as benchmarked: one :class:`Case` per op, and :func:`run`.

Each case times lcengine's op against the eager expression a user would write (built from
``lcengine.reference``) and ``torch.compile`` of that same expression, on the same inputs.
Rows report the effective bandwidth (the bytes the op must move at least, divided by time) and
its fraction of a copy probe measured in the same run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .. import (
    constraint_loss,
    distance_penalty,
    gaussian_kl,
    latent_adam_,
    reparameterize,
    standard_normal,
)
from ..backend import resolve_backend
from ..reference import constraint_loss_ref, distance_penalty_ref, gaussian_kl_ref, latent_adam_ref_
from .timing import Timer, copy_probe, environment, measure_stats

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Case:
    """One op as benchmarked: inputs, the eager contender, the lcengine call, bytes moved.

    Attributes:
        name: the op's public name.
        description: what one timed call computes.
        make_inputs: ``(rows, dim, dtype, device) -> inputs``, a dict of tensors and settings.
        eager: the eager PyTorch contender, ``inputs -> output`` (also what torch.compile gets).
        lcengine: ``(inputs, backend) -> output``, the lcengine op.
        passes: element-sized passes over ``[rows, dim]`` the op must make at least (its bytes).
        wrt: inputs differentiated after the forward (empty: forward only).
    """

    name: str
    description: str
    make_inputs: Callable[[int, int, torch.dtype, torch.device], dict]
    eager: Callable[[dict], object]
    lcengine: Callable[[dict, str], object]
    passes: int
    wrt: tuple = ()


def _grad_inputs(
    rows: int,
    dim: int,
    dtype: torch.dtype,
    device: torch.device,
    names: Sequence[str],
    scale: float = 1.0,
) -> dict:
    """Random leaves that require grad, one per name. # [rows, dim] each"""
    return {
        n: (torch.randn(rows, dim, device=device) * scale).to(dtype).requires_grad_(True)
        for n in names
    }


def _reparam_eager(x: dict) -> torch.Tensor:
    # what a user writes in eager PyTorch (torch's own RNG, not the Philox stream)
    return x["mu"] + torch.exp(0.5 * x["logvar"]) * torch.randn_like(x["mu"])  # [B, D]


def _adam_inputs(rows: int, dim: int, dtype: torch.dtype, device: torch.device) -> dict:
    return {
        "z": torch.randn(rows, dim, device=device).to(dtype),  # [B, D]
        "grad": torch.randn(rows, dim, device=device).to(dtype),  # [B, D]
        "m": torch.zeros(rows, dim, device=device, dtype=dtype),  # [B, D]
        "v": torch.zeros(rows, dim, device=device, dtype=dtype),
    }  # [B, D]


def _adam_eager(x: dict) -> torch.Tensor:
    return latent_adam_ref_(x["z"], x["grad"], x["m"], x["v"], 3, lr=1e-3)


CASES = {
    "reparameterize": Case(
        "reparameterize",
        "z = mu + exp(logvar/2) * eps, forward",
        lambda r, d, dt, dev: {
            "mu": torch.randn(r, d, device=dev).to(dt),
            "logvar": torch.randn(r, d, device=dev).to(dt),
        },
        _reparam_eager,
        lambda x, b: reparameterize(x["mu"], x["logvar"], seed=1, backend=b),
        passes=3,
    ),
    "standard_normal": Case(
        "standard_normal",
        "prior samples N(0, I)",
        lambda r, d, dt, dev: {"shape": (r, d), "dtype": dt, "device": dev},
        lambda x: torch.randn(x["shape"], dtype=x["dtype"], device=x["device"]),
        lambda x, b: standard_normal(
            x["shape"], seed=1, dtype=x["dtype"], device=x["device"], backend=b
        ),
        passes=1,
    ),
    "gaussian_kl": Case(
        "gaussian_kl",
        "KL to N(0, I), mean over rows, forward + backward",
        lambda r, d, dt, dev: _grad_inputs(r, d, dt, dev, ("mu", "logvar")),
        lambda x: gaussian_kl_ref(x["mu"], x["logvar"]),
        lambda x, b: gaussian_kl(x["mu"], x["logvar"], backend=b),
        passes=4,
        wrt=("mu", "logvar"),
    ),
    "distance_penalty": Case(
        "distance_penalty",
        "log(1 + (z - z_ref)^2) / sigma^2, mean, forward + backward wrt z",
        lambda r, d, dt, dev: {
            **_grad_inputs(r, d, dt, dev, ("z",)),
            "z_ref": torch.randn(r, d, device=dev).to(dt),
            "sigma": torch.rand(d, device=dev) + 0.5,
        },
        lambda x: distance_penalty_ref(x["z"], x["z_ref"], x["sigma"]),
        lambda x, b: distance_penalty(x["z"], x["z_ref"], x["sigma"], backend=b),
        passes=3,
        wrt=("z",),
    ),
    "constraint_loss": Case(
        "constraint_loss",
        "BCE with logits, mean, forward + backward wrt logits",
        lambda r, d, dt, dev: {
            **_grad_inputs(r, d, dt, dev, ("logits",), scale=3.0),
            "target": (torch.rand(r, d, device=dev) > 0.5).to(dt),
        },
        lambda x: constraint_loss_ref(x["logits"], x["target"]),
        lambda x, b: constraint_loss(x["logits"], x["target"], backend=b),
        passes=3,
        wrt=("logits",),
    ),
    "latent_adam": Case(
        "latent_adam",
        "in-place Adam step on latents",
        _adam_inputs,
        _adam_eager,
        lambda x, b: latent_adam_(x["z"], x["grad"], x["m"], x["v"], 3, lr=1e-3, backend=b),
        passes=7,
    ),
}


def timed_call(
    fn: Callable[[dict], object], inputs: dict, wrt: Sequence[str]
) -> Callable[[], object]:
    """``fn(inputs)``, followed by the gradient wrt ``wrt`` when the case times
    forward + backward."""
    if not wrt:
        return lambda: fn(inputs)
    return lambda: torch.autograd.grad(fn(inputs), [inputs[n] for n in wrt])


def parse_shape(text: str) -> tuple[int, int]:
    """``"65536x64"`` -> ``(65536, 64)``; ValueError naming the text otherwise."""
    try:
        rows, dim = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"shape must look like ROWSxDIM (e.g. 65536x64), got {text!r}") from None
    if rows < 1 or dim < 1:
        raise ValueError(f"shape sizes must be >= 1, got {text!r}")
    return rows, dim


def compiled_contenders(case: Case, modes: Sequence[str]) -> dict[str, Callable]:
    """``torch.compile`` of the case's eager expression, one per mode, labelled
    ``compile[mode]`` ("default" is torch.compile's default mode)."""
    return {
        f"compile[{mode}]": torch.compile(
            case.eager, mode=None if mode == "default" else mode, dynamic=False
        )
        for mode in modes
    }


def run(
    ops_names: Sequence[str],
    shapes: Sequence[tuple[int, int]],
    dtype: torch.dtype,
    device: torch.device,
    *,
    warmup: int = 3,
    reps: int = 15,
    compile_modes: Sequence[str] = ("default",),
    backends: Sequence[str] = ("auto",),
    progress: bool = True,
) -> dict:
    """Times ``ops_names`` over ``shapes``: eager, torch.compile per mode, lcengine per backend.

    Args:
        ops_names: keys of :data:`CASES`.
        shapes: ``(rows, dim)`` pairs.
        dtype: element type of every input.
        device: where everything runs.
        warmup: untimed calls of each contender before timing.
        reps: timed calls of each contender (interleaved round-robin).
        compile_modes: torch.compile modes to try ("default", "max-autotune-no-cudagraphs"...);
            a mode that fails to compile is reported in the row's ``compile_errors``.
        backends: lcengine backends; each gives one row per op and shape.
        progress: print a line before each op is timed.

    Returns:
        A JSON-serialisable report: ``environment``, ``copy_probe_GBps`` per shape,
        ``settings`` and one row per (op, shape, backend) with the lcengine time, its spread
        (``spread``: quartiles, min, max, reps, ``iqr_rel``), the eager and compiled times, the
        effective bandwidth and the speedups.
    """
    timer = Timer(device)
    rows_out = []
    probes = {}
    dtype_name = str(dtype).replace("torch.", "")
    elem = torch.tensor([], dtype=dtype).element_size()
    for rows, dim in shapes:
        shape = f"{rows}x{dim}"
        probes[shape] = copy_probe(max(rows * dim * elem, 4), device, timer, warmup, reps)
        for name in ops_names:
            case = CASES[name]
            inputs = case.make_inputs(rows, dim, dtype, device)
            contenders = {"eager": timed_call(case.eager, inputs, case.wrt)}
            compile_errors = {}
            for label, fn in compiled_contenders(case, compile_modes).items():
                call = timed_call(fn, inputs, case.wrt)
                try:
                    call()  # compile outside the timed region
                    contenders[label] = call
                except Exception as exc:  # a contender that cannot compile is reported, not hidden
                    compile_errors[label] = f"{type(exc).__name__}: {exc}"[:300]
            for b in backends:
                concrete = resolve_backend(b, device, dtype)
                contenders[f"lcengine[{concrete}]"] = timed_call(
                    lambda x, bb=concrete, op=case.lcengine: op(x, bb), inputs, case.wrt
                )
            if progress:
                print(
                    f"  timing {name} {shape} {dtype_name} ({len(contenders)} contenders)...",
                    flush=True,
                )
            stats = measure_stats(contenders, timer, warmup=warmup, reps=reps)
            times = {label: s.median for label, s in stats.items()}
            nbytes = case.passes * rows * dim * elem
            compiled = {k: v for k, v in times.items() if k.startswith("compile[")}
            best_compile = min(compiled.values()) if compiled else math.nan
            for label, t in times.items():
                if not label.startswith("lcengine["):
                    continue
                gbs = nbytes / t / 1e9
                rows_out.append(
                    {
                        "op": name,
                        "shape": shape,
                        "dtype": dtype_name,
                        "device": str(device),
                        "backend": label[9:-1],
                        "time_ms": t * 1e3,
                        "spread": stats[label].as_ms(),
                        "eager_ms": times["eager"] * 1e3,
                        "best_compile_ms": best_compile * 1e3 if compiled else None,
                        "compile_ms": {k: v * 1e3 for k, v in compiled.items()},
                        "compile_errors": compile_errors,
                        "bytes_moved": nbytes,
                        "effective_GBps": gbs,
                        "copy_probe_GBps": probes[shape],
                        "fraction_of_copy": gbs / probes[shape],
                        "speedup_vs_eager": times["eager"] / t,
                        "speedup_vs_compile": (best_compile / t) if compiled else None,
                        "speedup_vs_best_of_eager_and_compile": min(
                            [times["eager"]] + list(compiled.values())
                        )
                        / t,
                    }
                )
    return {
        "environment": environment(device),
        "copy_probe_GBps": probes,
        "settings": {"warmup": warmup, "reps": reps, "compile_modes": list(compile_modes)},
        "rows": rows_out,
    }
