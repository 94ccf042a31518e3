# SPDX-License-Identifier: Apache-2.0
"""The Triton kernel variants the launchers choose compile to sm_90 cubins, without a GPU.

The interpreter tests check what the kernels compute; this checks that the GPU compiler accepts
every variant the launchers pick for the benchmark and test shapes (tests/native/triton_aot.py
derives them by recording the launchers' own launches), that every kernel of the package is
among them, and that no kernel divides float32 approximately. Register spills are printed, not
judged: they depend on the Triton release (``python tests/native/triton_aot.py
--strict-spills`` fails on any).
"""

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.triton

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "triton_aot.py")


def test_launched_kernel_variants_compile_for_sm90():
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, SCRIPT], capture_output=True, text=True, env=env, timeout=1500
    )
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert lines, proc.stderr[-4000:]
    *kernels, summary = lines
    pattern = r"summary: (\d+) of (\d+) compiled \((\d+) variants x 1 architectures\)"
    match = re.fullmatch(pattern, summary)
    assert match, summary
    compiled, jobs, variants = (int(g) for g in match.groups())
    assert compiled == jobs == variants == len(kernels), proc.stdout[-4000:]
    assert all(line.startswith("ok sm_90 ") for line in kernels), proc.stdout
    # the optimizer's kernels and every row/RNG kernel are among them
    names = {line.split()[2] for line in kernels}
    for name in ("_linear_fwd_kernel", "_loss_check_kernel", "_standard_normal_fwd_kernel"):
        assert name in names, names


def test_variants_are_the_launchers_own_choice():
    """The recorder sees the launchers' own tile choice: the optimizer's GEMM tiles come from
    ``gemm_tile`` and the row kernels' from ``row_config`` (checked without compiling)."""
    pytest.importorskip("triton")
    code = (
        "import sys; sys.path.insert(0, 'tests');"
        "from native.triton_aot import collect;"
        "from lcengine._triton import optimize as k, _common as c;"
        "v = [key for _, key in collect()];"
        "fwd = [dict(key[2]) for key in v if key[0] == '_linear_fwd_kernel'];"
        "assert all(f['BLOCK_M'] == k.gemm_tile(bf16=f['BF16'], n=f['N'], interpreted=False)"
        "['BLOCK_M'] for f in fwd);"
        "kl = [dict(key[2]) for key in v if key[0] == '_gaussian_kl_fwd_kernel'];"
        "cfg = c.row_config(1048576, 1024);"
        "assert kl and all(f['BLOCK_R'] == cfg['BLOCK_R'] and f['D_STATIC'] == -1 for f in kl);"
        "print(len(v))"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(SCRIPT)))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert int(proc.stdout.split()[-1]) > 0
