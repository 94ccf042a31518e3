# SPDX-License-Identifier: Apache-2.0
"""The two settings objects of the fused latent optimizer.

:class:`OptimizeHyperParams` is what the optimizer computes (step limit, Adam, loss weights,
stopping thresholds): validated once by the public op and handed to every runner, the eager
reference included (through :meth:`OptimizeHyperParams.reference_kwargs`).

:class:`OptimizeTuning` is how the fused runners compute it (tile heights, threads, kernel
paths, CUDA graphs, chunking); it never changes a result beyond floating-point summation order.
Precedence: the op's ``tuning=`` argument, then the innermost :func:`optimize_tuning` block, then
the ``LCENGINE_OPTIMIZE_*`` environment variables (read once, at the first call that needs
them), then the defaults. Every field is one variable, ``LCENGINE_OPTIMIZE_`` + the field's name
in upper case:

    LCENGINE_OPTIMIZE_CPU_TILE_ROWS           native CPU: rows per work tile (0: automatic)
    LCENGINE_OPTIMIZE_CPU_THREADS             native CPU: OpenMP threads (0: automatic)
    LCENGINE_OPTIMIZE_CUDA_PATH               native CUDA: auto | tile | generic
    LCENGINE_OPTIMIZE_CUDA_TILE_ROWS          native CUDA, tile path: 0 (automatic) | 8 | 16 | 32
    LCENGINE_OPTIMIZE_CUDA_GRAPH              native CUDA, generic path: auto | on (1) | off (0)
    LCENGINE_OPTIMIZE_CUDA_CHUNK_ROWS         native CUDA, generic path: rows per chunk (0: auto)
    LCENGINE_OPTIMIZE_TRITON_GRAPH            triton on CUDA: on (1) | off (0)
    LCENGINE_OPTIMIZE_TRITON_CHUNK_STEPS      triton: steps per graph replay / host check
    LCENGINE_OPTIMIZE_TRITON_WORKSPACE_BYTES  triton: bytes of per-row buffers per block of rows

A variable that does not parse, is out of range or names no field raises ``ValueError`` naming
it; an empty one counts as unset.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

from ...validation import (
    check_adam,
    check_float,
    check_int,
    check_positive_float,
    check_probability,
)

ENV_PREFIX = "LCENGINE_OPTIMIZE_"


# ---------------------------------------------------------------------------------------------
# Hyper-parameters.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptimizeHyperParams:
    """What the optimizer computes, validated on construction.

    Attributes:
        steps: maximum Adam updates per row (>= 1).
        lr, beta1, beta2, eps: Adam (``torch.optim.Adam``'s formula, no weight decay).
        w_realism, w_attr, w_dist: loss weights (>= 0).
        tau_r: realism probability to exceed, in (0, 1).
        tau_a: confidence each requested attribute needs, in [0.5, 1).
    """

    steps: int = 300
    lr: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    w_realism: float = 1.0
    w_attr: float = 1.0
    w_dist: float = 0.1
    tau_r: float = 0.5
    tau_a: float = 0.5

    def __post_init__(self) -> None:
        steps = check_int("steps", self.steps, minimum=1)
        weights = {
            n: check_positive_float(n, getattr(self, n), allow_zero=True)
            for n in ("w_realism", "w_attr", "w_dist")
        }
        tau_r = check_probability("tau_r", self.tau_r, low_open=True)
        tau_a = check_float("tau_a", self.tau_a, low=0.5, high=1.0, high_open=True)
        lr, beta1, beta2, eps = check_adam(self.lr, (self.beta1, self.beta2), self.eps)
        checked = dict(
            steps=steps,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            tau_r=tau_r,
            tau_a=tau_a,
            **weights,
        )
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def betas(self) -> tuple[float, float]:
        return self.beta1, self.beta2

    def reference_kwargs(self) -> dict:
        """Keyword arguments of :func:`lcengine.reference.optimize_latents_ref`."""
        return dict(
            steps=self.steps,
            lr=self.lr,
            betas=self.betas,
            eps=self.eps,
            w_realism=self.w_realism,
            w_attr=self.w_attr,
            w_dist=self.w_dist,
            tau_r=self.tau_r,
            tau_a=self.tau_a,
        )


# ---------------------------------------------------------------------------------------------
# Tuning.
# ---------------------------------------------------------------------------------------------

CUDA_PATHS = ("auto", "tile", "generic")  # index = OptimizeLatentsArgs.cuda_path code
CUDA_GRAPH_MODES = ("auto", "on", "off")  # index = OptimizeLatentsArgs.cuda_graph code
CUDA_TILE_ROWS = (0, 8, 16, 32)
_ON, _OFF = ("on", "1", "true", "yes"), ("off", "0", "false", "no")


@dataclass(frozen=True)
class OptimizeTuning:
    """How the fused runners compute; validated on construction (``ValueError``/``TypeError``
    naming the field). Build a variant with :meth:`replace`.

    Attributes:
        cpu_tile_rows: rows per work tile of the native CPU loop (0: automatic).
        cpu_threads: OpenMP threads over the CPU tiles (0: automatic).
        cuda_path: native CUDA kernel path: "auto", "tile" (persistent row tiles; an error when
            the critics do not fit) or "generic" (per-step GEMM launches).
        cuda_tile_rows: rows per CTA of the tile path: 0 (a cost model picks), 8, 16 or 32 (an
            error when it does not fit the device's shared memory).
        cuda_graph: CUDA graph of the generic path: "auto" (batches up to 16384 rows), "on"
            (whenever the batch is one chunk) or "off".
        cuda_chunk_rows: rows per generic-path chunk (0: as many as 1 GiB of workspace holds).
        triton_graph: capture chunks of steps in a CUDA graph on GPU.
        triton_chunk_steps: Triton steps per graph replay, also how often the host checks
            whether any row is still active (>= 1).
        triton_workspace_bytes: the most the Triton runner's per-row buffers may take; larger
            batches run as consecutive blocks of rows (>= 1).
    """

    cpu_tile_rows: int = 0
    cpu_threads: int = 0
    cuda_path: str = "auto"
    cuda_tile_rows: int = 0
    cuda_graph: str = "auto"
    cuda_chunk_rows: int = 0
    triton_graph: bool = True
    triton_chunk_steps: int = 16
    triton_workspace_bytes: int = 4 << 30

    def __post_init__(self) -> None:
        for name in ("cpu_tile_rows", "cuda_chunk_rows"):
            check_int(name, getattr(self, name), minimum=0)
        check_int("cpu_threads", self.cpu_threads, minimum=0, maximum=4096)
        for name in ("triton_chunk_steps", "triton_workspace_bytes"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("cuda_tile_rows", self.cuda_tile_rows, minimum=0)
        if self.cuda_tile_rows not in CUDA_TILE_ROWS:
            raise ValueError(
                f"cuda_tile_rows must be one of {CUDA_TILE_ROWS}, got {self.cuda_tile_rows}"
            )
        for name, choices in (("cuda_path", CUDA_PATHS), ("cuda_graph", CUDA_GRAPH_MODES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        if not isinstance(self.triton_graph, bool):
            raise TypeError(f"triton_graph must be a bool, got {self.triton_graph!r}")

    def replace(self, **changes: Any) -> "OptimizeTuning":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "OptimizeTuning":
        """The defaults overridden by every ``LCENGINE_OPTIMIZE_<FIELD>`` variable set in
        ``environ`` (``os.environ`` when None).

        Raises:
            ValueError: a variable that does not parse or is out of range (the message names
                the variable), or an ``LCENGINE_OPTIMIZE_*`` name that is no field.
        """
        environ = os.environ if environ is None else environ
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, raw in environ.items():
            if not key.startswith(ENV_PREFIX):
                continue
            name = key[len(ENV_PREFIX) :].lower()
            if name not in fields:
                raise ValueError(
                    f"unknown environment variable {key}; the optimizer's tuning "
                    "variables are " + ", ".join(ENV_PREFIX + n.upper() for n in fields)
                )
            text = raw.strip().lower()
            if text == "":
                continue
            try:
                if fields[name].type in ("bool", bool):
                    if text not in _ON + _OFF:
                        raise ValueError(f"expected on or off, got {raw!r}")
                    values[name] = text in _ON
                elif fields[name].type in ("int", int):
                    try:
                        values[name] = int(text, 10)
                    except ValueError:
                        raise ValueError(f"expected an integer, got {raw!r}") from None
                elif name == "cuda_graph" and text in _ON + _OFF:
                    values[name] = "on" if text in _ON else "off"
                else:
                    values[name] = text
                cls(**{name: values[name]})  # validates this field alone
            except (TypeError, ValueError) as exc:
                raise ValueError(f"environment variable {key}: {exc}") from None
        return cls(**values)

    def native_fields(self) -> dict:
        """The tuning fields of ``_C.OptimizeLatentsArgs`` (csrc/lcengine_ops.h)."""
        return dict(
            cpu_tile_rows=self.cpu_tile_rows,
            cpu_threads=self.cpu_threads,
            cuda_path=CUDA_PATHS.index(self.cuda_path),
            cuda_tile_rows=self.cuda_tile_rows,
            cuda_graph=CUDA_GRAPH_MODES.index(self.cuda_graph),
            cuda_chunk_rows=self.cuda_chunk_rows,
        )


_env_tuning: dict[str, OptimizeTuning] = {}
_context_tuning: contextvars.ContextVar[Optional[OptimizeTuning]] = contextvars.ContextVar(
    "lcengine_optimize_tuning", default=None
)


def env_tuning() -> OptimizeTuning:
    """The tuning of the ``LCENGINE_OPTIMIZE_*`` variables, read at the first call."""
    if "tuning" not in _env_tuning:
        _env_tuning["tuning"] = OptimizeTuning.from_env()
    return _env_tuning["tuning"]


def current_tuning() -> OptimizeTuning:
    """The tuning in force: the innermost :func:`optimize_tuning` block, else the environment's."""
    ctx = _context_tuning.get()
    return ctx if ctx is not None else env_tuning()


def resolve_tuning(tuning: Optional[OptimizeTuning]) -> OptimizeTuning:
    """A call's tuning: its own ``tuning=`` argument, else :func:`current_tuning`."""
    if tuning is None:
        return current_tuning()
    if not isinstance(tuning, OptimizeTuning):
        raise TypeError(f"tuning must be an OptimizeTuning, got {type(tuning).__name__}")
    return tuning


@contextlib.contextmanager
def optimize_tuning(
    tuning: Optional[OptimizeTuning] = None, **changes: Any
) -> Iterator[OptimizeTuning]:
    """Context manager setting the optimizer's tuning inside the block.

    Args:
        tuning: the tuning to start from (default: the one in force).
        **changes: fields to change, e.g. ``optimize_tuning(cuda_path="generic")``.

    Yields:
        The tuning in force inside the block.
    """
    base = resolve_tuning(tuning)
    chosen = base.replace(**changes) if changes else base
    token = _context_tuning.set(chosen)
    try:
        yield chosen
    finally:
        _context_tuning.reset(token)
