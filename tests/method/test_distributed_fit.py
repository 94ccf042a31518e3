# SPDX-License-Identifier: Apache-2.0
"""``lcengine fit`` under torchrun with two gloo processes on the toy application: the same
quality as one process at the same global batch, continuing a run, rank 0's checkpoints, and a
global batch that does not split among the ranks refused."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lcengine.cli import main
from lcengine.method.run import load_run
from support.method_toys import TOY_APPLICATION_PATH, toy_data

TESTS = Path(__file__).resolve().parents[1]
STEPS = ["--attribute-steps", "300", "--realism-steps", "300"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(n: int, *argv: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n),
           "--master-port", str(_port()), "-m", "lcengine", "--", *argv]  # fmt: skip
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)


def _quality(folder: Path) -> tuple[float, float]:
    """Attribute critic accuracy on fresh toy encodings; optimizer's measured success."""
    run = load_run(folder)
    lc = run.constraints
    x, att = toy_data(2000, seed=7)
    with torch.no_grad():
        acc = float(((lc.attribute_critic(torch.from_numpy(x[:, :4])) > 0).numpy() == att).mean())
    res = lc.sample("a0 !a1", 400, method="optimize", seed=2)
    m = run.measure(res.images)
    return acc, float(((m[:, 0] == 1) & (m[:, 1] == 0)).mean())


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    one, two = root / "one", root / "two"
    n = torch.get_num_threads()
    try:
        argv = ["fit", "--run", str(one), "--application", TOY_APPLICATION_PATH, *STEPS]
        assert main(argv + ["--no-progress"]) == 0
    finally:
        torch.set_num_threads(n)
    r = _torchrun(2, "fit", "--run", str(two), "--application", TOY_APPLICATION_PATH, *STEPS,
                  "--no-progress")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "trained" in r.stdout and "on 2 processes" in r.stdout
    return one, two


def test_two_processes_reach_the_one_process_quality(fitted):
    one, two = fitted
    state = json.loads((two / "constraints" / "constraints.json").read_text())["state"]
    assert state["attribute_step"] == 300 and state["realism_step"] == 300
    config = json.loads((two / "run.json").read_text())["config"]
    assert config["training"]["realism_steps"] == 300  # the totals it was trained to
    (acc1, ok1), (acc2, ok2) = _quality(one), _quality(two)
    assert acc1 > 0.95 and acc2 > 0.95 and abs(acc1 - acc2) < 0.02
    assert ok1 > 0.8 and ok2 > 0.8 and abs(ok1 - ok2) < 0.08
    # different draws: not the same weights as the single process, the same learning
    w1 = load_run(one).constraints.trainer.attribute.layers[0].weight
    w2 = load_run(two).constraints.trainer.attribute.layers[0].weight
    assert not torch.equal(w1, w2)


def test_a_run_continues_under_torchrun(fitted, tmp_path):
    import shutil

    _, two = fitted
    copy = tmp_path / "copy"
    shutil.copytree(two, copy)
    r = _torchrun(2, "fit", "--run", str(copy), "--realism-steps", "360", "--no-progress")
    assert r.returncode == 0, r.stderr
    state = json.loads((copy / "constraints" / "constraints.json").read_text())["state"]
    assert state["realism_step"] == 360 and state["attribute_step"] == 300
    assert not list(copy.rglob("*.tmp"))


def test_a_batch_that_does_not_split_is_refused(tmp_path):
    r = _torchrun(3, "fit", "--run", str(tmp_path / "r"), "--application", TOY_APPLICATION_PATH,
                  *STEPS, "--no-progress")  # fmt: skip
    assert r.returncode != 0
    assert "must be a multiple of the world size (3)" in r.stderr


def test_one_process_streams_are_unchanged():
    """The rank-keyed draws apply only with several ranks: a single process draws exactly what
    it drew before (the seeded runs and their tests stay valid)."""
    from lcengine.method.streams import derive_seed
    from lcengine.method.training import ConstraintTrainer, process_rank

    assert process_rank() == (0, 1)
    t = ConstraintTrainer(4, 3, torch.ones(4))
    assert t._seed("realism/index", 5) == derive_seed(t.config.seed, "realism/index", 5)
    assert t._local(128) == 128
    idx = t._indices(type("D", (), {"num_rows": 10})(), 6, torch.Generator().manual_seed(0))
    assert np.array_equal(idx.numpy(), torch.randint(10, (6,), generator=torch.Generator()
                                                      .manual_seed(0)).numpy())  # fmt: skip
