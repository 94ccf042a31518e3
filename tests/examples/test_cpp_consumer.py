# SPDX-License-Identifier: Apache-2.0
"""``examples/cpp``: the C++ consumer builds with CMake against the torch wheel's libtorch, runs
an exported package on its example batch, matches the Python sampler, writes images Python can
load, and rejects wrong input files with a message and a non-zero exit."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from lcengine.method.export import export_sampler
from lcengine.method.sampler import ConditionalSampler
from support.method_toys import fit_toy_run

SOURCE = Path(__file__).resolve().parents[2] / "examples" / "cpp"
COMPILERS = ("c++", "g++", "clang++")
TOLERANCE = 1e-4


def _missing_tools() -> str:
    if shutil.which("cmake") is None:
        return "cmake is not on PATH"
    if not any(shutil.which(c) for c in COMPILERS):
        return f"no C++ compiler ({', '.join(COMPILERS)}) on PATH"
    return ""


def _check(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout}\n{r.stderr}"
    return r


@pytest.mark.slow
def test_cpp_consumer_matches_the_python_sampler(tmp_path):
    missing = _missing_tools()
    if missing:
        pytest.skip(missing)
    # A toy run, exported as an AOTInductor package with its example batch.
    sampler = ConditionalSampler.from_run(fit_toy_run(tmp_path / "run"))
    exported = export_sampler(sampler, tmp_path / "toy.pt2")
    package, example = exported.path, exported.example_path

    # Configure and build the example out of the source tree.
    build = tmp_path / "build"
    prefix = torch.utils.cmake_prefix_path
    _check(["cmake", "-S", SOURCE, "-B", build, f"-DCMAKE_PREFIX_PATH={prefix}"], timeout=300)
    _check(["cmake", "--build", build, "-j", "2"], timeout=900)
    exe = build / "lcengine_sample"
    assert exe.is_file()

    # Run it on the example batch (and batch 1 inside), writing the images.
    out = tmp_path / "images.pt"
    r = subprocess.run([exe, package, example, out], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "attributes (3): a0 a1 a2" in r.stdout and "latent_dim: 4" in r.stdout
    batches = re.findall(
        r"^batch (\d+): images \[(.*?)\] sum (\S+) max_abs_diff (\S+)$", r.stdout, re.M
    )
    assert [(b, shape) for b, shape, _, _ in batches] == [("8", "8, 5"), ("1", "1, 5")], r.stdout
    reported = float(re.search(r"^max_abs_diff (\S+) \(tolerance", r.stdout, re.M).group(1))
    assert reported <= TOLERANCE

    # The C++ images load in Python and match the sampler on the same inputs.
    inputs = torch.load(example)
    with torch.no_grad():
        expected = sampler(inputs["targets"], inputs["latents"])
    images = torch.load(out)
    assert images.shape == expected.shape == (8, 5)
    assert float((images - expected).abs().max()) <= TOLERANCE
    assert float(batches[0][2]) == pytest.approx(float(images.sum()), abs=1e-4)

    # Wrong files and mismatched shapes: a message on stderr and exit status 2.
    bad = tmp_path / "bad.example.pt"
    torch.save({**inputs, "targets": inputs["targets"][:, :2]}, bad)
    cases = {
        (package, package): "is not a file written by torch.save",
        (example, package): "is not an AOTInductor package",
        (tmp_path / "missing.pt2", example): "no such file",
        (package, bad): "targets must be [n, 3] (one column per attribute), got [8, 2]",
    }
    for args, message in cases.items():
        r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and "error: " in r.stderr and message in r.stderr, (args, r)

    # Images that differ from the package's by more than the tolerance: exit status 1.
    off = tmp_path / "off.example.pt"
    torch.save({**inputs, "images": inputs["images"] + 1e-3}, off)
    r = subprocess.run([exe, package, off], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "FAILED" in r.stdout, r
