# SPDX-License-Identifier: Apache-2.0
"""The lower instruction-set variants of the native CPU kernels (LCENGINE_CPU_ISA=avx2|baseline)
against the references: every kernel is compiled for AVX-512, AVX2 and the baseline and chosen
at run time, so on an AVX-512 machine the default run only reaches the first. This reruns the
native CPU tests of every kernel under each lower level, in a subprocess (the level is read once
per process)."""
import os
import re
import subprocess
import sys

import pytest

import lcengine
from lcengine.backend import unavailable_reason

LEVELS = ("baseline", "avx2", "avx512")
NATIVE_TESTS = ("test_reparameterize.py", "test_gaussian_kl.py", "test_distance_penalty.py",
                "test_constraint_loss.py", "test_latent_adam.py", "test_optimize_latents.py")
HERE = os.path.dirname(os.path.abspath(__file__))


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
        env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert level == isa
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "native and cpu",
         *(os.path.join(HERE, name) for name in NATIVE_TESTS)],
        env=env, cwd=HERE, capture_output=True, text=True)
    tail = "\n".join(run.stdout.splitlines()[-15:])
    assert run.returncode == 0, (f"native CPU tests at LCENGINE_CPU_ISA={isa}:\n{tail}\n"
                                 f"{run.stderr[-2000:]}")
    passed = re.search(r"(\d+) passed", tail)
    assert passed is not None and int(passed.group(1)) >= 100, tail
