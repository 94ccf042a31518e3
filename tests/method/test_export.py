# SPDX-License-Identifier: Apache-2.0
"""``lcengine export``: the AOTInductor package loads in a Python that never imports lcengine
and gives the sampler's images at any batch; the ONNX model does in ONNX Runtime; failures
leave nothing behind."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lcengine.cli import main
from lcengine.method.export import example_path_for, export_sampler
from lcengine.method.sampler import ConditionalSampler
from support.method_toys import fit_toy_run, toy_model

# A Python that has never imported lcengine: loads the package, runs the saved inputs.
FRESH_PYTHON = """
import sys, torch
from torch._inductor import aoti_load_package
package, cases, out = sys.argv[1:4]
model = aoti_load_package(package)
inputs = torch.load(cases)
results = [model(t, z) for t, z in inputs]
torch.save(results, out)
meta = model.get_metadata()
print(meta["lcengine.latent_dim"], meta["lcengine.attributes"])
print(sorted(m for m in sys.modules if m.split(".")[0] == "lcengine"))
"""


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return fit_toy_run(tmp_path_factory.mktemp("export") / "run")


@pytest.fixture(scope="module")
def sampler(toy_run):
    return ConditionalSampler.from_run(toy_run)


@pytest.fixture(scope="module")
def package(sampler, tmp_path_factory):
    out = tmp_path_factory.mktemp("pt2") / "toy.pt2"
    res = export_sampler(sampler, out)
    assert res.path == out and out.is_file() and res.max_abs_diff <= 1e-4
    return res


def _cases(sampler, sizes):
    """(targets, latents) pairs of several batch sizes, targets from the training table."""
    rng = np.random.default_rng(0)
    table = sampler.attribute_table
    out = []
    for b in sizes:
        t = torch.from_numpy(table[rng.integers(0, len(table), b)].astype(np.float32))
        out.append((t, torch.from_numpy(rng.standard_normal((b, 4)).astype(np.float32))))
    return out


def test_the_package_runs_without_lcengine_and_matches_the_sampler(sampler, package, tmp_path):
    cases = _cases(sampler, (1, 2, 37, 300))
    torch.save(cases, tmp_path / "cases.pt")
    r = subprocess.run(
        [sys.executable, "-c", FRESH_PYTHON, str(package.path), str(tmp_path / "cases.pt"),
         str(tmp_path / "out.pt")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == '4 ["a0", "a1", "a2"]'
    assert lines[-1] == "[]"  # no lcengine module was imported
    results = torch.load(tmp_path / "out.pt")
    for (t, z), got in zip(cases, results):
        assert got.shape == (t.shape[0], 5)
        torch.testing.assert_close(got, sampler(t, z), atol=1e-4, rtol=0)


def test_the_example_file_and_metadata(sampler, package):
    ex = torch.load(example_path_for(package.path))
    assert set(ex) == {"targets", "latents", "images"} and ex["targets"].shape == (8, 3)
    torch.testing.assert_close(ex["images"], sampler(ex["targets"], ex["latents"]), atol=0, rtol=0)
    meta = {k: json.loads(v) for k, v in package.metadata.items()}
    assert meta == {
        "lcengine.format": "lcengine.sampler/1",
        "lcengine.attributes": ["a0", "a1", "a2"],
        "lcengine.latent_dim": 4,
        "lcengine.data_shape": [5],
    }


def test_onnx_matches_in_onnxruntime(sampler, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    out = tmp_path / "toy.onnx"
    res = export_sampler(sampler, out, format="onnx")
    assert res.max_abs_diff <= 1e-4
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["lcengine.attributes"]) == ["a0", "a1", "a2"]
    for t, z in _cases(sampler, (1, 37)):
        (got,) = session.run(["images"], {"targets": t.numpy(), "latents": z.numpy()})
        np.testing.assert_allclose(got, sampler(t, z).numpy(), atol=1e-4, rtol=0)


def test_the_command_and_its_errors(toy_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    out = tmp_path / "m.onnx"
    argv = ["export", "--run", str(toy_run), "--out", str(out), "--format", "onnx"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["out"] == str(out) and summary["max_abs_diff"] <= 1e-4
    assert summary["metadata"]["lcengine.latent_dim"] == 4
    assert main(["export", "--run", str(toy_run), "--out", str(tmp_path / "m.pt2"),
                 "--format", "onnx"]) == 2  # fmt: skip
    assert "must end in .onnx" in capsys.readouterr().err
    assert main(["export", "--run", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(argv[:4] + [str(tmp_path / "no" / "m.pt2")]) == 2
    assert "folder" in capsys.readouterr().err


def test_a_failed_check_leaves_nothing(sampler, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    with pytest.raises(ValueError, match="differs from the sampler"):
        export_sampler(sampler, tmp_path / "m.onnx", format="onnx", tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_a_decoder_of_plain_functions_is_refused(toy_run, tmp_path):
    from lcengine.method.run import CONSTRAINTS_DIR

    s = ConditionalSampler.from_checkpoint(toy_run / CONSTRAINTS_DIR, toy_model())
    with pytest.raises(ValueError, match="nn.Module"):
        export_sampler(s, tmp_path / "m.pt2")
    with pytest.raises(ValueError, match="format must be one of"):
        export_sampler(s, tmp_path / "m.pt2", format="tflite")
    with pytest.raises(ValueError, match="example_rows"):
        export_sampler(s, tmp_path / "m.pt2", example_rows=1)
    assert list(tmp_path.iterdir()) == []


def test_a_package_path_is_written_atomically(package):
    leftovers = [p.name for p in Path(package.path).parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
