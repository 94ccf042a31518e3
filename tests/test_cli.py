# SPDX-License-Identifier: Apache-2.0
"""The `lcengine` command's own behaviour (the commands themselves are tested with their
packages: tests/benchmarks, tests/method, tests/apps)."""

import shutil
import subprocess
import sys

import pytest


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


HEAVY = ("torch", "numpy", "matplotlib")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_help_imports_no_torch():
    """Building the parser (what `lcengine --help` and `lcengine <cmd> --help` do) loads no
    torch, numpy or matplotlib: the command modules import them inside their handlers."""
    proc = _run(
        "import sys, lcengine.cli\n"
        "lcengine.cli.build_parser()\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


@pytest.mark.parametrize("argv", [["--help"], ["fit", "--help"], ["bench", "--help"]])
def test_help_exits_zero_without_torch(argv):
    proc = _run(
        "import sys, lcengine.cli\n"
        "try:\n"
        f"    lcengine.cli.main({argv!r})\n"
        "except SystemExit as exc:\n"
        f"    loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "    assert not loaded, loaded\n"
        "    raise\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: lcengine"), proc.stdout


def test_the_console_script_prints_help():
    exe = shutil.which("lcengine")
    if exe is None:
        pytest.skip("the lcengine console script is not on PATH")
    for argv in (["--help"], ["fit", "--help"]):
        proc = subprocess.run([exe, *argv], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stdout.startswith("usage: lcengine"), proc.stderr


@pytest.mark.parametrize("package", ["lcengine", "lcengine.method", "lcengine.benchmarks"])
def test_lazy_packages_export_every_name(package):
    """The PEP 562 packages: every name of __all__ resolves (importing on first access) and
    is listed by dir(); importing the package alone loads no torch."""
    proc = _run(
        "import importlib, sys\n"
        f"m = importlib.import_module({package!r})\n"
        "assert 'torch' not in sys.modules, 'importing the package loaded torch'\n"
        "missing = [n for n in m.__all__ if n not in dir(m)]\n"
        "assert not missing, missing\n"
        "for name in m.__all__:\n"
        "    getattr(m, name)\n"
        "ns = {}\n"
        f"exec('from {package} import *', ns)\n"
        "assert set(m.__all__) <= set(ns), set(m.__all__) - set(ns)\n"
    )
    assert proc.returncode == 0, proc.stderr


def test_lazy_names_are_the_real_objects():
    import lcengine
    import lcengine.method
    from lcengine.method.constraints import LatentConstraints
    from lcengine.ops import optimize_latents

    assert lcengine.optimize_latents is optimize_latents
    assert lcengine.method.LatentConstraints is LatentConstraints
    assert isinstance(lcengine.__version__, str)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lcengine.nope  # noqa: B018


def test_import_torch_then_lcengine_registers_the_ops():
    proc = _run("import torch, lcengine\nprint(torch.ops.lcengine.reparameterize)\n")
    assert proc.returncode == 0, proc.stderr


def test_torch_free_copies_match_the_originals():
    """Names duplicated into torch-free modules for the parsers equal their originals."""
    from lcengine.benchmarks import cli_args, optimizer, row_ops

    assert cli_args.ROW_OPS == tuple(row_ops.CASES)
    assert cli_args.OPTIMIZER_CASE_NAMES == tuple(optimizer.OPTIMIZER_CASES)
    assert cli_args.DTYPE_NAMES == tuple(row_ops.DTYPES)
