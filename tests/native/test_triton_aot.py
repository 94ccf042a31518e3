# SPDX-License-Identifier: Apache-2.0
"""The fused optimizer's Triton kernels compile to sm_80 and sm_90 cubins.

The interpreter tests check what the kernels compute; this checks that the GPU compiler accepts
every configuration the optimizer launches (tests/native/triton_aot.py), without a GPU. Register
spills are printed, not judged: they depend on the Triton release (`python
tests/native/triton_aot.py --strict-spills` fails on any).
"""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.triton

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "triton_aot.py")


def test_optimizer_kernels_compile_for_sm80_and_sm90():
    pytest.importorskip("triton")
    from native.triton_aot import expected_count  # tests/ is on sys.path (pytest pythonpath)

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert all(line.startswith("ok ") for line in lines), proc.stdout
    assert len(lines) == expected_count(), proc.stdout
