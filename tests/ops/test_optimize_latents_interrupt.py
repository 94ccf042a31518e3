# SPDX-License-Identifier: Apache-2.0
"""Ctrl-C stops a long native optimize_latents call.

The native CPU loop (csrc/optimize.cpp) runs with the GIL released; between steps it polls a
callback that, on the calling (main) thread and at most every 50 ms, takes the GIL back and runs
PyErr_CheckSignals (csrc/bindings.cpp, SignalPoller). A pending KeyboardInterrupt abandons the
call and reaches Python. The CUDA generic path polls the same callback between graph replays
(checked on the CPU by tests/native/cuda_emu/check.py).
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from lcengine.backend import native_module

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
import torch
import lcengine
from support.optimize_problems import make_problem

z, y, mask, real, attr = make_problem(4096, 32, (128, 128), "relu", seed=0)
print("started", flush=True)
t0 = time.perf_counter()
try:
    # tau_r near 1 and a tiny lr: no row ever converges, so 10^6 steps would run for hours
    lcengine.optimize_latents(z, y, mask, real, attr, 1.0, steps=1_000_000, lr=1e-6,
                              tau_r=0.9999999, backend="native")
except KeyboardInterrupt:
    print(f"interrupted {{time.perf_counter() - t0:.2f}}", flush=True)
    sys.exit(0)
print("finished", flush=True)
sys.exit(3)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_sigint_interrupts_native_optimize_latents():
    if native_module() is None:
        if "native" in os.environ.get("LCENGINE_REQUIRE", ""):
            pytest.fail("lcengine._C is required (LCENGINE_REQUIRE) but not importable")
        pytest.skip("lcengine._C is not built")
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(tests=TESTS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # imports and the problem first
        assert line.strip() == "started", line + proc.stderr.read()
        time.sleep(1.0)  # well inside the native loop
        assert proc.poll() is None, "the optimizer ended on its own"
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        latency = time.perf_counter() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and out.startswith("interrupted"), out + err[-3000:]
    assert latency < 10.0, f"KeyboardInterrupt took {latency:.1f} s after SIGINT"
