# SPDX-License-Identifier: Apache-2.0
"""``lcengine optimize``: the batch job over a targets file, on a toy run folder: its outputs,
row-keyed starts, resumption after a crash or a kill, refusals, and the same rows from two gloo
processes under torchrun (one node, and two "nodes" on localhost through the rendezvous)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import lcengine
from lcengine.cli import main
from lcengine.method import job as job_module
from lcengine.method.job import JobStopped, optimize_job
from lcengine.method.requests import complete_requests, row_draws
from lcengine.method.run import load_run
from support.method_toys import fit_toy_run

TESTS = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return fit_toy_run(tmp_path_factory.mktemp("job") / "run")


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    path = tmp_path_factory.mktemp("targets") / "targets.npy"
    np.save(path, np.random.default_rng(0).integers(-1, 2, size=(3000, 3)).astype(np.int8))
    return path


def _outputs(folder: Path) -> dict:
    return {f: np.load(folder / f"{f}.npy") for f in ("latents", "accepted", "steps")}


def _same(a: Path, b: Path) -> None:
    x, y = _outputs(a), _outputs(b)
    assert np.array_equal(x["accepted"], y["accepted"]) and np.array_equal(x["steps"], y["steps"])
    np.testing.assert_allclose(x["latents"], y["latents"], atol=1e-5, rtol=0)


def test_job_writes_every_row_and_matches_generate(toy_run, targets, tmp_path):
    m = optimize_job(toy_run, targets, tmp_path / "out", chunk_rows=700, seed=3, progress=False,
                     decode=True, log=lambda s: None)  # fmt: skip
    assert m["complete"] and m["rows"] == 3000 and m["world_size"] == 1
    assert [c["rows"] for c in m["chunks"]][:2] == [[0, 700], [700, 1400]]
    assert m["chunks"][-1]["rows"] == [2800, 3000] and m["chunks_done"] == [0, 1, 2, 3, 4]
    out = _outputs(tmp_path / "out")
    assert out["latents"].shape == (3000, 4) and out["latents"].dtype == np.float32
    assert out["accepted"].dtype == np.bool_ and out["steps"].dtype == np.int32
    images = np.load(tmp_path / "out" / "images.npy")
    assert images.shape == (3000, 5) and images.dtype == np.float32
    assert m["accepted_rows"] == int(out["accepted"].sum())
    t = np.load(targets)
    assert m["inputs"]["targets"]["shape"] == [3000, 3]
    # the same rows as LatentConstraints.generate from the same prior samples and targets
    run = load_run(toy_run)
    lc = run.constraints
    rows = np.arange(1400, 1500)
    rows = rows[(t[rows] >= 0).any(axis=1)]  # generate refuses an empty request; the job not
    mask = t[rows] >= 0
    values = complete_requests(
        np.where(mask, t[rows], 0), mask, lc.summary.attribute_table(), rows.size,
        seed=lcengine.method.streams.derive_seed(3, "optimize/complete"), row_index=rows,
    )  # fmt: skip
    z0 = lc.prior_latents(3000, 3)[rows]
    ref = lc.generate(values, mask, method="optimize", z_start=z0)
    np.testing.assert_allclose(out["latents"][rows], ref.latents.numpy(), atol=1e-5, rtol=0)
    assert np.array_equal(out["steps"][rows], ref.steps) and (ref.steps > 0).all()
    np.testing.assert_allclose(images[rows], ref.images, atol=1e-5)


def test_rows_do_not_depend_on_the_chunking(toy_run, targets, tmp_path):
    for rows in (700, 1024):
        optimize_job(toy_run, targets, tmp_path / str(rows), chunk_rows=rows, progress=False,
                     log=lambda s: None)  # fmt: skip
    _same(tmp_path / "700", tmp_path / "1024")
    z = lcengine.standard_normal((40, 4), seed=9)
    tail = lcengine.standard_normal((13, 4), seed=9, offset=27 * 4)
    assert torch.equal(z[27:], tail)  # prior row r is stream position r*D whatever the block
    assert np.array_equal(row_draws(5, np.arange(10))[4:], row_draws(5, np.arange(4, 10)))


def test_given_starts_and_the_python_arrays(toy_run, tmp_path):
    t = np.ones((50, 3), dtype=np.int8)
    z = np.random.default_rng(1).standard_normal((50, 4)).astype(np.float32)
    m = optimize_job(toy_run, t, tmp_path / "a", start=z, progress=False, log=lambda s: None)
    assert m["inputs"]["start"]["shape"] == [50, 4] and m["sources"]["start"] is None
    lc = load_run(toy_run).constraints
    ref = lc.generate(t, t.astype(bool), method="optimize", z_start=torch.from_numpy(z))
    np.testing.assert_allclose(
        np.load(tmp_path / "a" / "latents.npy"), ref.latents.numpy(), atol=1e-5, rtol=0
    )


def test_a_crash_keeps_finished_chunks_and_the_rerun_completes(
    toy_run, targets, tmp_path, monkeypatch
):
    full = tmp_path / "full"
    optimize_job(toy_run, targets, full, chunk_rows=500, progress=False, log=lambda s: None)
    calls = {"n": 0}
    real = job_module.optimize_from

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(job_module, "optimize_from", failing)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated crash"):
        optimize_job(toy_run, targets, out, chunk_rows=500, progress=False, log=lambda s: None)
    records = sorted(p.name for p in (out / "chunks").iterdir())
    assert records == [f"chunk-{i:08d}.json" for i in range(3)]  # chunk 3 never marked done
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    monkeypatch.setattr(job_module, "optimize_from", real)
    seen = []
    m = optimize_job(toy_run, targets, out, chunk_rows=500, progress=False, log=seen.append)
    assert m["complete"] and "resuming" in seen[0] and "3 done" in seen[0]
    _same(full, out)


def test_changed_inputs_and_settings_are_refused(toy_run, targets, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["optimize", "--run", str(toy_run), "--targets", str(targets), "--out", str(out)]
    assert main(base + ["--no-progress"]) == 0
    other = tmp_path / "other.npy"
    t = np.load(targets)
    t[5, 1] = 1 - abs(t[5, 1])
    np.save(other, t)
    capsys.readouterr()
    assert main(base[:4] + [str(other), "--out", str(out), "--no-progress"]) == 2
    assert "different inputs" in capsys.readouterr().err
    assert main(base + ["--seed", "4", "--no-progress"]) == 2
    assert "different settings" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full((4, 3), 2, dtype=np.int8))
    assert main(base[:4] + [str(bad), "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "targets[0, 0] is 2" in capsys.readouterr().err
    np.save(bad, np.zeros((4, 2), dtype=np.int8))
    assert main(base[:4] + [str(bad), "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "shape [N, 3]" in capsys.readouterr().err
    np.save(bad, np.zeros((4, 3), dtype=np.float32))
    assert main(base[:4] + [str(bad), "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "must be int8" in capsys.readouterr().err
    start = tmp_path / "start.npy"
    z = np.zeros((3000, 4), dtype=np.float32)
    z[7, 2] = np.nan
    np.save(start, z)
    argv = base[:6] + [str(tmp_path / "c"), "--start", str(start), "--no-progress"]
    assert main(argv) == 2
    assert "start[7] is not finite" in capsys.readouterr().err
    np.save(start, np.zeros((5, 4), dtype=np.float32))
    assert main(argv) == 2
    assert "start must have shape [3000, 4]" in capsys.readouterr().err
    with pytest.raises(ValueError, match="chunk_rows"):
        optimize_job(toy_run, targets, tmp_path / "d", chunk_rows=0)


def _wait_for_records(folder: Path, count: int, proc: subprocess.Popen, limit: float = 120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if (folder / "chunks").is_dir() and len(list((folder / "chunks").glob("*.json"))) >= count:
            return
        if proc.poll() is not None:
            pytest.fail(f"the job ended before {count} chunks: {proc.communicate()}")
        time.sleep(0.01)
    pytest.fail("no chunk records appeared")


@pytest.fixture(scope="module")
def big_targets(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "targets.npy"
    np.save(path, np.random.default_rng(1).integers(-1, 2, size=(200_000, 3)).astype(np.int8))
    return path


def _command(run, targets, out, *extra):
    return ["optimize", "--run", str(run), "--targets", str(targets), "--out", str(out),
            "--chunk-rows", "2000", "--no-progress", *extra]  # fmt: skip


def test_a_killed_job_resumes_and_sigterm_stops_between_chunks(toy_run, big_targets, tmp_path):
    cli = [sys.executable, "-m", "lcengine"]
    out = tmp_path / "out"
    proc = subprocess.Popen(cli + _command(toy_run, big_targets, out), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    _wait_for_records(out, 5, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((out / "chunks").glob("*.json")))
    assert 5 <= done < 100
    proc = subprocess.Popen(cli + _command(toy_run, big_targets, out), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    _wait_for_records(out, done + 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "the same command continues the job" in err
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    r = subprocess.run(cli + _command(toy_run, big_targets, out), env=_env(),
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "manifest.json").read_text())["complete"]
    whole = tmp_path / "whole"
    assert main(_command(toy_run, big_targets, whole)) == 0
    _same(whole, out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args) -> list:
    return [sys.executable, "-m", "torch.distributed.run", *args, "-m", "lcengine", "--"]


def test_two_gloo_processes_give_the_one_process_rows(toy_run, targets, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(_command(toy_run, targets, one)) == 0
    cmd = _torchrun("--nproc-per-node", "2", "--master-port", str(_free_port()))
    r = subprocess.run(cmd + _command(toy_run, targets, two), env=_env(), capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((two / "manifest.json").read_text())
    assert m["complete"] and m["world_size"] == 2
    assert {c["rank"] for c in m["chunks"]} == {0, 1}
    _same(one, two)


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the ranks through /proc")
def test_a_killed_rank_is_reported_and_the_rerun_resumes(toy_run, big_targets, tmp_path):
    out = tmp_path / "out"
    cmd = _torchrun("--nproc-per-node", "2", "--master-port", str(_free_port()))
    proc = subprocess.Popen(cmd + _command(toy_run, big_targets, out), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    _wait_for_records(out, 6, proc)
    ranks = _children(proc.pid)
    assert len(ranks) == 2, ranks
    os.kill(max(ranks), signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "FAILED" in err or "failed" in err  # torchrun names the rank that died
    done = len(list((out / "chunks").glob("*.json")))
    assert 6 <= done < 100
    r = subprocess.run([sys.executable, "-m", "lcengine"] + _command(toy_run, big_targets, out),
                       env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"{done} done" in r.stderr
    whole = tmp_path / "whole"
    assert main(_command(toy_run, big_targets, whole)) == 0
    _same(whole, out)


def test_two_nodes_on_localhost_through_the_rendezvous(toy_run, targets, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(_command(toy_run, targets, one)) == 0
    port = _free_port()
    nodes = [
        subprocess.Popen(
            _torchrun(
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                f"127.0.0.1:{port}",
                "--rdzv-id",
                "lcengine-test",
            )
            + _command(toy_run, targets, two),
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    for p in nodes:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    m = json.loads((two / "manifest.json").read_text())
    assert m["complete"] and m["world_size"] == 2
    _same(one, two)


def test_job_stopped_reports_the_signal():
    stop = JobStopped(signal.SIGTERM, 3, 10)
    assert "3 of 10 chunks" in str(stop) and stop.signum == signal.SIGTERM


_RSS_CHILD = r"""
import resource, sys, numpy as np, torch
torch.set_num_threads(1)
from lcengine.method.run import load_run
run = load_run(sys.argv[1])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[2] == "job":
    from lcengine.method.job import optimize_job
    optimize_job(run, sys.argv[3], sys.argv[4], chunk_rows=16384, progress=False,
                 log=lambda s: None)
print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_a_2m_row_job_keeps_its_resident_set_bounded(tmp_path):
    """2,000,000 rows at D=64: 512 MB of latents written, inputs and outputs never mapped, so
    the job's peak resident set grows by far less than its outputs (ru_maxrss of a child)."""
    from lcengine.benchmarks.job import BENCH_APPLICATION

    run = tmp_path / "run"
    config = {"seed": 0, "latent_dim": 64, "attributes": 8, "hidden": [16], "steps": 1,
              "training_overrides": {}}  # fmt: skip
    BENCH_APPLICATION.prepare_run(run, config, cache_dir=None, use_cache=False, progress=False,
                                  log=lambda s: None)  # fmt: skip
    n = 2_000_000
    targets = np.lib.format.open_memmap(tmp_path / "t.npy", "w+", np.int8, (n, 8))
    for r0 in range(0, n, 500_000):
        targets[r0 : r0 + 500_000] = np.random.default_rng(r0).integers(-1, 2, (500_000, 8))
    targets.flush()
    del targets
    out = tmp_path / "out"
    child = [sys.executable, "-c", _RSS_CHILD, str(run), "job", str(tmp_path / "t.npy"), str(out)]
    r = subprocess.run(child, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    before, after = (int(v) for v in r.stdout.split()[-2:])  # KiB
    latents = np.load(out / "latents.npy", mmap_mode="r")
    assert latents.shape == (n, 64) and json.loads((out / "manifest.json").read_text())["complete"]
    assert latents.nbytes == 512_000_000
    assert (after - before) * 1024 < 160 * 2**20, (before, after)  # the outputs: 512 MB
