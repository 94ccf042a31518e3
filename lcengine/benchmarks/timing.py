# SPDX-License-Identifier: Apache-2.0
"""Timing machinery shared by every benchmark: the timer, interleaved measurement, the probes.

A figure from these shared machines is only trusted as a ratio of contenders measured side by
side in one process: :func:`measure_stats` warms every contender up, then times them in
alternating blocks (a few consecutive calls of each, after one untimed call that brings the
process back to that contender's own state) and keeps every sample, so a report can state both
the median and the run-to-run spread (quartiles, min and max) of each row. Blocks, not single
calls, because a call's time depends on what ran just before it: on CPU, a 256 MB eager
expression timed right after a ``torch.compile`` contender took 2x its time alone (its fresh
outputs lost the transparent huge pages that ``THP_MEM_ALLOC_ENABLE=1`` gives a steady loop), so
a round-robin figure was not what a user timing that expression measures.

The probes give the same run's physical reference: :func:`copy_probe` (``dst.copy_(src)``
bandwidth) for memory-bound ops and :func:`gemm_probe` (a large square ``torch.mm``) for the
critic-bound optimizer.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..backend import build_info


class Timer:
    """Seconds taken by one call: wall clock on CPU; CUDA events after an L2 flush on GPU.

    Args:
        device: where the timed calls run.
    """

    def __init__(self, device: torch.device):
        self.device = device
        # 256 MiB, larger than any GPU's L2: zeroing it evicts the previous call's data
        self.flush = (
            torch.empty(64 * 2**20, dtype=torch.int32, device=device)
            if device.type == "cuda"
            else None
        )

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


@dataclass(frozen=True)
class Stats:
    """Summary of one contender's samples, in seconds.

    Attributes:
        median: the figure every report quotes.
        q1, q3: first and third quartiles (``statistics.quantiles``, inclusive method); equal
            to the median when there is a single sample.
        min, max: fastest and slowest sample.
        reps: number of samples.
    """

    median: float
    q1: float
    q3: float
    min: float
    max: float
    reps: int

    @property
    def iqr_rel(self) -> float:
        """Interquartile range relative to the median (0.05: the middle half spans 5%)."""
        return (self.q3 - self.q1) / self.median if self.median > 0 else 0.0

    def as_ms(self) -> dict:
        """The spread as stored in a report row (milliseconds, plus ``reps`` and ``iqr_rel``)."""
        return {
            "q1_ms": self.q1 * 1e3,
            "q3_ms": self.q3 * 1e3,
            "min_ms": self.min * 1e3,
            "max_ms": self.max * 1e3,
            "reps": self.reps,
            "iqr_rel": self.iqr_rel,
        }


def summarize(samples: list[float]) -> Stats:
    """Median, quartiles and range of ``samples`` (at least one)."""
    if not samples:
        raise ValueError("summarize needs at least one sample")
    med = statistics.median(samples)
    if len(samples) == 1:
        q1 = q3 = med
    else:
        q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return Stats(med, q1, q3, min(samples), max(samples), len(samples))


BLOCK_ROUNDS = 3  # rounds of per-contender blocks in measure_samples


def measure_samples(
    contenders: dict[str, Callable[[], object]], timer: Timer, *, warmup: int, reps: int
) -> dict[str, list[float]]:
    """Seconds per call of every contender, ``reps`` samples each.

    Each contender is first called ``warmup`` times. Then come up to :data:`BLOCK_ROUNDS`
    rounds; in each, every contender in turn gets one untimed call (which restores its own
    steady state: allocator and page state, caches) and a block of consecutive timed calls. So
    each figure is what that contender measures timed alone, and a slow phase of the machine
    still hits every contender alike.
    """
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    rounds = max(1, min(BLOCK_ROUNDS, reps))
    for r in range(rounds):
        block = reps // rounds + (1 if r < reps % rounds else 0)
        for name, fn in contenders.items():
            if len(contenders) > 1:
                fn()  # untimed: back to this contender's steady state
            for _ in range(block):
                samples[name].append(timer(fn))
    return samples


def measure_stats(
    contenders: dict[str, Callable[[], object]], timer: Timer, *, warmup: int, reps: int
) -> dict[str, Stats]:
    """:func:`measure_samples`, summarized per contender."""
    samples = measure_samples(contenders, timer, warmup=warmup, reps=reps)
    return {name: summarize(s) for name, s in samples.items()}


def measure(
    contenders: dict[str, Callable[[], object]], timer: Timer, *, warmup: int, reps: int
) -> dict[str, float]:
    """Median seconds per contender, contenders interleaved round-robin."""
    stats = measure_stats(contenders, timer, warmup=warmup, reps=reps)
    return {name: s.median for name, s in stats.items()}


def copy_probe(nbytes: int, device: torch.device, timer: Timer, warmup: int, reps: int) -> float:
    """Copy bandwidth in GB/s (bytes read + bytes written) for a float32 buffer of ``nbytes``
    (at least 256 KiB)."""
    n = max(nbytes // 4, 1 << 16)
    src = torch.randn(n, device=device)  # [n]
    dst = torch.empty_like(src)  # [n]
    t = measure({"copy": lambda: dst.copy_(src)}, timer, warmup=warmup, reps=reps)["copy"]
    return 2 * n * 4 / t / 1e9


# The GEMM probe per device type: (dtype, n, warmup, reps). On GPU it is the bf16 peak that
# the bf16-weight optimizer rows are judged against.
GEMM_PROBES = {"cpu": (torch.float32, 2048, 2, 5), "cuda": (torch.bfloat16, 8192, 3, 10)}


CPU = torch.device("cpu")


def gemm_probe(
    device: torch.device = CPU, dtype: Optional[torch.dtype] = None
) -> tuple[float, str]:
    """GFLOP/s of a large square ``torch.mm`` on ``device`` measured now.

    On CPU it uses all torch threads.

    Args:
        device: where.
        dtype: the operands' dtype (None: :data:`GEMM_PROBES`' for the device).

    Returns:
        ``(GFLOP/s, what was measured)``, e.g. ``(201.3, "fp32 torch.mm 2048^3")``.
    """
    probe_dtype, n, warmup, reps = GEMM_PROBES[device.type]
    dtype = probe_dtype if dtype is None else dtype
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))  # [n, n] x2
    c = torch.empty(n, n, device=device, dtype=dtype)  # [n, n]
    t = measure({"mm": lambda: torch.mm(a, b, out=c)}, Timer(device), warmup=warmup, reps=reps)[
        "mm"
    ]
    name = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    return 2.0 * n**3 / t / 1e9, f"{name} torch.mm {n}^3"


def peak_bytes(fn: Callable[[], object], device: torch.device) -> Optional[int]:
    """Peak CUDA memory allocated during one call of ``fn`` beyond what was live before
    (``None`` off GPU)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    """What a figure depends on: versions, threads, the device and its name."""
    info = build_info()
    env = {
        "torch": torch.__version__,
        "lcengine": info["version"],
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_name": _cpu_name(),
        "device": device.type,
        "torch_threads": torch.get_num_threads(),
        "openmp_threads": info["openmp_threads"],
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    return env
