# SPDX-License-Identifier: Apache-2.0
"""The lower instruction-set variants of the native CPU kernels (LCENGINE_CPU_ISA=avx2|baseline)
against the references.

Every CPU kernel is compiled for AVX-512, AVX2 and the baseline and chosen at run time
(csrc/cpu_kernels.h: LC_MULTIVERSION), so a default run only reaches the CPU's best level. This
reruns the native CPU tests of every op (the ``native and cpu`` cases of tests/ops/) under each
lower level, in a subprocess because the level is read once per process, and requires exactly
the cases collected at the default level to pass there.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lcengine
from lcengine.backend import unavailable_reason

LEVELS = ("baseline", "avx2", "avx512")  # ascending; the names build_info() reports
SELECT = "native and cpu"
ROOT = Path(__file__).resolve().parents[2]
OP_TESTS = ROOT / "tests" / "ops"
TIMEOUT_S = 1800


def native_test_files():
    """Every op test module; ``-k SELECT`` keeps their native CPU cases."""
    return sorted(str(path) for path in OP_TESTS.glob("test_*.py"))


def run_pytest(args, env):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-k",
            SELECT,
            *args,
            *native_test_files(),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


@pytest.mark.parametrize("isa", ["avx2", "baseline"])
def test_native_cpu_kernels_at_lower_isa(isa):
    if unavailable_reason("native", "cpu") is not None:
        pytest.skip(unavailable_reason("native", "cpu"))
    best = lcengine.build_info()["cpu_simd_level"]
    if LEVELS.index(best) <= LEVELS.index(isa):
        pytest.skip(f"this CPU's best level is {best}: the default run already covers {isa}")
    env = {**os.environ, "LCENGINE_CPU_ISA": isa}
    level = subprocess.run(
        [sys.executable, "-c", "import lcengine; print(lcengine.build_info()['cpu_simd_level'])"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert level == isa

    collected = run_pytest(["--collect-only", "-q"], dict(os.environ))
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-2000:]
    expected = {line for line in collected.stdout.splitlines() if "::" in line}
    assert expected, f"no test matches -k {SELECT!r} in {OP_TESTS}"

    run = run_pytest(["-q", "-rA"], env)
    tail = "\n".join(run.stdout.splitlines()[-15:])
    assert run.returncode == 0, (
        f"native CPU tests at LCENGINE_CPU_ISA={isa}:\n{tail}\n{run.stderr[-2000:]}"
    )
    passed = set(re.findall(r"^PASSED (\S+)", run.stdout, flags=re.M))
    missing = sorted(expected - passed)
    assert not missing, (
        f"{len(missing)} of {len(expected)} native CPU tests did not pass at "
        f"LCENGINE_CPU_ISA={isa} (skipped?): {missing[:10]}\n{tail}"
    )
