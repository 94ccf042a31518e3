# SPDX-License-Identifier: Apache-2.0
"""The `lcengine` command's own behaviour (the commands themselves are tested with their
packages: tests/benchmarks, tests/method, tests/apps)."""

import subprocess
import sys


def test_cli_stops_quietly_when_its_reader_closes_the_pipe():
    """`lcengine info | head -1` style: the reader is gone before the output is written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lcengine.cli", "info"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before the child (still importing torch) writes anything
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert proc.returncode == 141
