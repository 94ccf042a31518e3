# SPDX-License-Identifier: Apache-2.0
"""The fused optimizer's Triton kernels compile to sm_80 and sm_90 cubins with no spills.

The interpreter tests check what the kernels compute; this checks that the GPU compiler accepts
every configuration the optimizer launches (tests/triton_aot.py), without a GPU.
"""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.triton


def test_optimizer_kernels_compile_for_sm80_and_sm90():
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = os.path.join(os.path.dirname(__file__), "triton_aot.py")
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True, env=env,
                          timeout=600)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert len(lines) == 60 and all(line.startswith("ok ") for line in lines), proc.stdout
