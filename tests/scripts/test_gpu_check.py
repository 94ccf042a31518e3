# SPDX-License-Identifier: Apache-2.0
"""scripts/gpu_check.sh: valid bash, under 10 minutes (one device command) by its own phase
limits, clear refusals."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"


def test_gpu_check_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_gpu_check_phase_limits_fit_in_ten_minutes():
    text = SCRIPT.read_text()
    line = re.search(r"^BUILD_S=\d+( \w+_S=\d+)+$", text, re.M)
    assert line is not None, "the phase limits line is missing"
    limits = dict(item.split("=") for item in line.group(0).split())
    assert {"BUILD_S", "TESTS_S", "BENCH_FIT_S"} <= set(limits), limits
    # each phase may take its limit plus timeout's 10 s grace; 30 s for probing and the summary
    total = sum(int(v) + 10 for v in limits.values()) + 30
    assert total < 10 * 60, total
    for name in limits:
        assert f'"${name}"' in text, f"{name} is not used"


def test_gpu_check_without_out_dir_prints_usage():
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "usage: scripts/gpu_check.sh OUT_DIR" in r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine with no GPU")
def test_gpu_check_refuses_a_machine_without_gpu(tmp_path):
    r = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
    )
    assert r.returncode == 2
    assert "sees no CUDA device" in r.stderr
