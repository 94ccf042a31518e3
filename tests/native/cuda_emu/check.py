# SPDX-License-Identifier: Apache-2.0
"""Runs the emulated CUDA optimizer (build.py) against the eager reference loop.

Usage: ``python tests/native/cuda_emu/check.py MODULE_PATH`` with the module that build.py
made. Every case forces one kernel path through the ``cuda_*`` fields of ``OptimizeTuning``,
runs the real binding ``optimize_latents_cuda`` on host memory (workspace filled with garbage,
like fresh GPU memory) and compares with ``lcengine.optimize_latents(backend="eager")`` exactly
as the GPU tests do. Prints one ``ok`` line per case; exits non-zero at the first mismatch.
"""

import copy
import ctypes
import importlib.util
import os
import subprocess
import sys
import time

import torch

import lcengine
from lcengine.ops.optimize_latents import OptimizeHyperParams, OptimizeTuning
from lcengine.ops.optimize_latents.prepare import parse_critics, prepare

TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, TESTS)
from support.optimize_problems import _bf16_weights_of, assert_same_run, make_problem  # noqa: E402

# stubs.cpp: lcengine_emu_counter
COUNTERS = (
    "kernels",
    "graph_launches",
    "syncs",
    "instantiations",
    "updates",
    "update_failures",
    "live_execs",
    "live_streams",
)


def load(path: str):
    spec = importlib.util.spec_from_file_location("_C", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    lib = ctypes.CDLL(path)  # the same loaded library: its counters are the module's
    lib.lcengine_emu_counter.restype = ctypes.c_longlong
    mod.emu_counters = lambda: {k: lib.lcengine_emu_counter(i) for i, k in enumerate(COUNTERS)}
    mod.emu_fail_updates = lib.lcengine_emu_fail_updates
    return mod


def run_emulated(
    mod,
    z,
    y,
    mask,
    real,
    attr,
    sigma,
    tuning,
    *,
    steps,
    lr=0.05,
    w_dist=0.1,
    tau_r=0.5,
    tau_a=0.5,
    weight_dtype=torch.float32,
):
    ra = getattr(real, "num_attributes", y.shape[1])
    hyper = OptimizeHyperParams(steps=steps, lr=lr, w_dist=w_dist, tau_r=tau_r, tau_a=tau_a)
    prep = prepare(
        parse_critics(real, attr, z.shape[1], y.shape[1], ra),
        z,
        y.float(),
        mask,
        sigma,
        hyper,
        realism_attributes=ra,
        weight_dtype=weight_dtype,
    )
    b, d, c = prep.rows, prep.dim, prep.num_outputs
    z_out = torch.full((b, d), float("nan"))  # [B, D]
    conv = torch.full((b,), 7, dtype=torch.uint8)  # [B]: anything but 0/1 until written
    st = torch.full((b,), -5, dtype=torch.int64)  # [B]
    logits = torch.full((b, c), float("nan"))  # [B, C]
    args = prep.native_args(mod, z_out, conv, st, logits, hyper=hyper, tuning=tuning)
    nbytes = mod.optimize_latents_cuda_workspace_bytes(args)
    raw = torch.full((nbytes + 512,), 0xFF, dtype=torch.uint8)  # garbage (NaN floats)
    mod.optimize_latents_cuda(args, (raw.data_ptr() + 255) // 256 * 256, nbytes, 0)
    assert set(conv.tolist()) <= {0, 1} and bool((st >= 0).all()), "outputs not written"
    assert not bool(z_out.isnan().any()), "latents not written"
    probs = torch.sigmoid(logits)
    return lcengine.OptimizeResult(z_out, conv.bool(), st, probs[:, 0], probs[:, 1:])


# The cases main() declares, run after they are all declared: the first line printed is
# "planned N", so the test knows how many "ok" lines to expect without a count of its own.
PLAN: list = []


def case(*args, **kw):
    """Declares one case (see :func:`run_case`)."""
    PLAN.append(lambda: run_case(*args, **kw))


def run_case(mod, name, problem, sigma, knobs, *, expect=None, **kw):
    """One run against the reference with the tuning ``OptimizeTuning(**knobs)``; ``expect``:
    exact deltas of some emulator counters."""
    tuning = OptimizeTuning(**knobs)
    t0 = time.perf_counter()
    z, y, mask, real, attr = problem
    ref_kw = {k: v for k, v in kw.items() if k != "weight_dtype"}
    ref = lcengine.optimize_latents(z, y, mask, real, attr, sigma, backend="eager", **ref_kw)
    before = mod.emu_counters()
    out = run_emulated(mod, z, y, mask, real, attr, sigma, tuning, **kw)
    after = mod.emu_counters()
    assert_same_run(out, ref, y, mask, **{k: kw[k] for k in ("tau_r", "tau_a") if k in kw})
    for k, v in (expect or {}).items():
        got = after[k] - before[k]
        assert got == v, f"{name} {knobs}: {k} {got}, expected {v}"
    converged_at = sorted(set(ref.steps[ref.converged].tolist()))
    print(
        f"ok {name} {knobs} converged {int(ref.converged.sum())}/{len(ref.converged)} at "
        f"steps {converged_at[:6]} ({time.perf_counter() - t0:.1f} s)",
        flush=True,
    )


def main(path: str) -> None:
    mod = load(path)
    assert mod.with_cuda and hasattr(mod, "optimize_latents_cuda")
    kw = dict(steps=20, w_dist=0.3, lr=0.08)
    for act in ("relu", "softplus", "leaky_relu"):  # odd sizes: row and column tails
        p = make_problem(37, 13, (32, 24), act, seed=3713)
        sigma = torch.rand(13, generator=torch.Generator().manual_seed(13)) + 0.5  # [D]
        case(mod, f"37x13 {act} tile", p, sigma, {"cuda_path": "tile"}, **kw)
    p = make_problem(37, 13, (32, 24), "relu", seed=3713)
    for rows in (8, 16, 32):
        case(mod, "37x13 relu tile", p, 1.0, {"cuda_path": "tile", "cuda_tile_rows": rows}, **kw)
    for knobs in (
        {"cuda_path": "generic", "cuda_graph": "on"},
        {"cuda_path": "generic", "cuda_graph": "off"},
        {"cuda_path": "generic", "cuda_chunk_rows": 16},
    ):
        case(mod, "37x13 relu generic", p, 1.0, knobs, **kw)
    # rows converging at different steps; a zero-shot column and a stacked attribute critic
    p = make_problem(64, 16, (32, 32), "relu", seed=3, sharpen=6.0)
    conv = dict(steps=40, tau_r=0.6, tau_a=0.7, lr=0.05)
    case(mod, "converging", p, 1.0, {"cuda_path": "tile"}, **conv)
    case(mod, "converging", p, 1.0, {"cuda_path": "generic", "cuda_graph": "on"}, **conv)
    # every row converges by step 9 of 40: the generic path stops at its first host check (one
    # graph replay / 16 plain steps, one sync; the gated final forward and check are no-ops), every
    # tile CTA leaves its step loop early and skips the final check
    p = make_problem(29, 12, (32, 24), "relu", seed=10, sharpen=10.0)
    early = dict(steps=40, tau_r=0.3, lr=0.3, w_dist=0.05)
    for knobs, expect in (
        ({"cuda_path": "generic", "cuda_graph": "on"}, {"graph_launches": 1, "syncs": 1}),
        ({"cuda_path": "generic", "cuda_graph": "off"}, {"graph_launches": 0, "syncs": 1}),
        ({"cuda_path": "tile"}, {"kernels": 1}),
    ):
        case(mod, "all converge early", p, 1.0, knobs, expect=expect, **early)
    p = make_problem(19, 8, (16, 16), "softplus", a=5, a_real=3, stacked=True, seed=7)
    case(mod, "stacked zero-shot", p, 0.5, {"cuda_path": "tile"}, steps=20)
    # a width over 256: only the generic path can take it
    p = make_problem(9, 5, (300,), "leaky_relu", seed=5)
    case(mod, "wide", p, 1.0, {}, steps=10)
    # bf16 weights: exactly the fp32 loop on bf16-rounded weights
    for knobs in ({"cuda_path": "tile"}, {"cuda_path": "generic"}):
        PLAN.append(lambda knobs=knobs: bf16_case(mod, knobs))
    PLAN.append(lambda: graph_reuse_case(mod))
    PLAN.append(lambda: interrupt_case(mod, path))
    print(f"planned {len(PLAN)}", flush=True)
    for run in PLAN:
        run()


def bf16_case(mod, knobs):
    """bf16 weights: exactly the fp32 loop on bf16-rounded weights."""
    z, y, mask, real, attr = make_problem(37, 13, (32, 24), "relu", seed=9)
    rounded = (
        z,
        y,
        mask,
        _bf16_weights_of(copy.deepcopy(real), 13),
        _bf16_weights_of(copy.deepcopy(attr)),
    )
    ref = lcengine.optimize_latents(*rounded, 1.0, backend="eager", steps=8)
    out = run_emulated(
        mod,
        z,
        y,
        mask,
        real,
        attr,
        1.0,
        OptimizeTuning(**knobs),
        steps=8,
        weight_dtype=torch.bfloat16,
    )
    assert_same_run(out, ref, y, mask)
    print(f"ok bf16 weights {knobs}", flush=True)


def graph_reuse_case(mod):
    """The generic path keeps its graph executable between calls: the first call of a structure
    instantiates, later ones capture again and update the executable with their own pointers
    (results still exact, so the update took the new arguments), a refused update instantiates
    afresh, another structure gets its own entry, at most 8 are kept, and cuda_release_graphs
    frees them."""
    graph = OptimizeTuning(cuda_path="generic", cuda_graph="on")
    kw = dict(steps=16, w_dist=0.3, lr=0.08)
    mod.cuda_release_graphs()
    assert mod.emu_counters()["live_execs"] == 0

    def once(rows, seed, expect):
        z, y, mask, real, attr = make_problem(rows, 8, (16, 12), "relu", seed=seed)
        ref = lcengine.optimize_latents(z, y, mask, real, attr, 1.0, backend="eager", **kw)
        before = mod.emu_counters()
        out = run_emulated(mod, z, y, mask, real, attr, 1.0, graph, **kw)
        after = mod.emu_counters()
        assert_same_run(out, ref, y, mask)
        got = {k: after[k] - before[k] for k in expect}
        assert got == expect, f"graph reuse, {rows} rows: {got}, expected {expect}"

    fresh = {"instantiations": 1, "updates": 0, "update_failures": 0, "graph_launches": 1}
    reused = {"instantiations": 0, "updates": 1, "update_failures": 0, "graph_launches": 1}
    once(21, 1, fresh)
    once(21, 2, reused)  # new tensors: every pointer differs
    once(21, 3, reused)
    mod.emu_fail_updates(1)
    once(21, 4, {"instantiations": 1, "updates": 0, "update_failures": 1})
    once(21, 5, reused)
    once(22, 6, fresh)  # another row count: another entry
    assert mod.emu_counters()["live_execs"] == 2
    for rows in range(23, 33):
        once(rows, rows, fresh)
    assert mod.emu_counters()["live_execs"] == 8, mod.emu_counters()  # the bound
    assert mod.emu_counters()["live_streams"] == 8, mod.emu_counters()
    assert mod.cuda_release_graphs() == 8
    assert mod.emu_counters()["live_execs"] == 0 and mod.emu_counters()["live_streams"] == 0
    print("ok graph executables reused across calls", flush=True)


def interrupt_case(mod, path):
    """SIGINT during a long emulated generic-path run: the host loop polls between graph
    replays, so the call ends with KeyboardInterrupt soon after, without caching its graph.
    Runs in a child process (the signal must reach a main thread that is inside the call)."""
    code = f"""
import os, signal, sys, threading, time
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
import check
mod = check.load({path!r})
from lcengine.ops.optimize_latents import OptimizeTuning
z, y, mask, real, attr = check.make_problem(16, 8, (16, 12), "relu", seed=1)
tuning = OptimizeTuning(cuda_path="generic", cuda_graph="on")
threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
t0 = time.perf_counter()
try:
    check.run_emulated(mod, z, y, mask, real, attr, 1.0, tuning, steps=1000000, lr=1e-6,
                       tau_r=0.9999999)
except KeyboardInterrupt:
    c = mod.emu_counters()
    print("interrupted", round(time.perf_counter() - t0, 2), c["live_execs"], c["live_streams"])
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    out = proc.stdout.split()
    assert proc.returncode == 0 and out[:1] == ["interrupted"], proc.stdout + proc.stderr[-2000:]
    assert float(out[1]) < 30 and out[2:] == ["0", "0"], proc.stdout
    print(f"ok SIGINT stops the generic path's host loop ({out[1]} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
