# SPDX-License-Identifier: Apache-2.0
"""``lcengine fit`` under signals and concurrent writers: the writer lock, a clean stop at a
step boundary on SIGTERM / Ctrl-C, checkpoints every N steps, interrupted preparations."""

import json
import os
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
import torch

from lcengine.cli import main
from lcengine.method import checkpoint, store
from lcengine.method.constraints import LatentConstraints
from lcengine.method.run import PREPARING_FILE, RUN_FILE, load_run
from support.method_toys import NAMES, TOY_APPLICATION_PATH, tiny_training, toy_data, toy_model

warnings.filterwarnings("ignore", message=".*falling back to the eager.*")
warnings.filterwarnings("ignore", message=".*no fused.*")

TESTS_DIR = Path(__file__).resolve().parents[1]
LONG = "1000000"  # realism steps no test waits for


def _env() -> dict:
    path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _fit(*args: str) -> int:
    n = torch.get_num_threads()
    try:
        return main(["fit", *args, "--no-progress"])
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A fitted toy run folder (40 realism steps); tests copy it before writing."""
    folder = tmp_path_factory.mktemp("toy") / "run"
    assert _fit("--run", str(folder), "--application", TOY_APPLICATION_PATH) == 0
    return folder


def _copy(toy_run: Path, tmp_path: Path) -> Path:
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(toy_run, folder)
    return folder


def _start_long_fit(folder: Path, checkpoint_every: int = 0) -> subprocess.Popen:
    """``lcengine fit`` continuing ``folder`` towards a step count it never reaches; returns
    once the child is about to train (it logs 'continuing' just before)."""
    p = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from lcengine.cli import main; sys.exit(main(sys.argv[1:]))",
            "fit",
            "--run",
            str(folder),
            "--realism-steps",
            LONG,
            "--checkpoint-every",
            str(checkpoint_every),
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    lines = []
    for line in p.stderr:
        lines.append(line)
        if "continuing" in line:
            return p
    p.wait()
    raise AssertionError(f"fit exited early ({p.returncode}): {''.join(lines)}")


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_stops_fit_at_step_boundary_and_saves(toy_run, tmp_path, sig, status):
    folder = _copy(toy_run, tmp_path)
    p = _start_long_fit(folder, checkpoint_every=7)
    record = folder / "constraints" / "constraints.json"
    try:
        for _ in range(600):  # until the child has saved past step 40 (readers need no lock)
            seen = json.loads(record.read_text())["state"]["realism_step"]
            if seen > 40:
                break
            threading.Event().wait(0.1)
        p.send_signal(sig)
        out, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == status, err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("lcengine fit: stopped by " + signal.Signals(sig).name)
    assert str(folder / "constraints") in last and f"lcengine fit --run {folder}" in last
    assert "continues it" in last
    t = load_run(folder).constraints.trainer
    assert seen <= t.realism_step < int(LONG)
    assert seen > 40
    assert t.attribute_step == 40
    # a step boundary: every realism update that owes an actor update has it
    assert t.actor_step == t.realism_step // tiny_training().actor_every
    assert f"realism step {t.realism_step}" in last
    # `lcengine fit` on the folder continues it
    assert _fit("--run", str(folder), "--realism-steps", str(t.realism_step + 3)) == 0
    assert load_run(folder).constraints.trainer.realism_step == t.realism_step + 3


def test_second_fit_on_same_folder_is_refused(toy_run, tmp_path, capsys):
    folder = _copy(toy_run, tmp_path)
    p = _start_long_fit(folder)
    try:
        assert _fit("--run", str(folder), "--realism-steps", "50") == 2
        err = capsys.readouterr().err
        assert err.startswith("lcengine fit: error: --run ") and err.count("\n") == 1
        assert str(folder) in err and "another process" in err and f"pid {p.pid}" in err
        # readers take no lock
        assert main(["sample", "--run", str(folder), "--request", "a0", "-n", "2"]) == 0
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=120)
    assert p.returncode == 143
    assert _fit("--run", str(folder), "--realism-steps", "50") == 0  # the lock was released


def test_writer_lock_is_reentrant_in_one_thread_and_refused_to_another(tmp_path):
    with store.writer_lock(tmp_path / "f", "--run") as lock:
        assert lock.read_text().strip() == str(os.getpid())
        with store.writer_lock(tmp_path / "f", "--run"):
            pass
        errors = []

        def other():
            try:
                with store.writer_lock(tmp_path / "f", "--run"):
                    pass
            except RuntimeError as exc:
                errors.append(str(exc))

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert len(errors) == 1 and "another thread" in errors[0]
    with store.writer_lock(tmp_path / "f"):  # released
        pass


def test_fit_stops_when_requested_and_saves_at_that_step(tmp_path):
    x, a = toy_data(256)
    lc = LatentConstraints(toy_model(), NAMES, training=tiny_training())
    polls = []

    def stop_requested() -> bool:
        polls.append(1)
        return len(polls) > 40 + 13  # 40 attribute updates, then 13 realism updates

    lc.fit(x, a, progress=False, checkpoint_dir=tmp_path / "c", stop_requested=stop_requested)
    assert lc.fit_stopped
    t = lc.trainer
    assert (t.attribute_step, t.realism_step) == (40, 13)
    saved = LatentConstraints.load(tmp_path / "c", toy_model()).trainer
    assert (saved.attribute_step, saved.realism_step, saved.actor_step) == (40, 13, 1)
    lc.fit(progress=False)  # continues to the configured totals
    assert not lc.fit_stopped and lc.trainer.realism_step == 40


def test_fit_restores_the_signal_handlers(toy_run, tmp_path):
    folder = _copy(toy_run, tmp_path)
    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    assert _fit("--run", str(folder), "--realism-steps", "45") == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def _count_saves(monkeypatch) -> list:
    steps = []
    real_save = checkpoint.save_constraints

    def save(lc, path):
        steps.append(lc.trainer.realism_step)
        return real_save(lc, path)

    monkeypatch.setattr(checkpoint, "save_constraints", save)
    return steps


def test_checkpoint_every_is_honoured_on_new_run(tmp_path, monkeypatch):
    steps = _count_saves(monkeypatch)
    args = ["--run", str(tmp_path / "r"), "--application", TOY_APPLICATION_PATH]
    assert _fit(*args, "--checkpoint-every", "15") == 0
    assert steps == [15, 30, 40]  # every 15 realism updates, and at the end


def test_checkpoint_every_is_honoured_on_continued_run(toy_run, tmp_path, monkeypatch):
    folder = _copy(toy_run, tmp_path)
    steps = _count_saves(monkeypatch)
    assert _fit("--run", str(folder), "--realism-steps", "70", "--checkpoint-every", "25") == 0
    assert steps == [50, 70]  # totals that are multiples of 25, and at the end
    steps.clear()
    assert _fit("--run", str(folder), "--realism-steps", "80", "--checkpoint-every", "0") == 0
    assert steps == [80]


def test_fit_prepares_a_run_again_after_an_interrupted_preparation(toy_run, tmp_path, capsys):
    folder = _copy(toy_run, tmp_path)
    (folder / PREPARING_FILE).write_text("12345\n")  # as a killed preparation leaves it
    assert _fit("--run", str(folder)) == 0
    assert capsys.readouterr().out.startswith(f"completed {folder}")
    assert not (folder / PREPARING_FILE).exists()
    # a new run whose preparation died before writing run.json starts again
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / PREPARING_FILE).write_text("12345\n")
    (fresh / "partial.bin").write_bytes(b"x")
    assert _fit("--run", str(fresh), "--application", TOY_APPLICATION_PATH) == 0
    assert (fresh / RUN_FILE).is_file() and not (fresh / PREPARING_FILE).exists()


def test_refused_folder_is_left_untouched(tmp_path, capsys):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "file.txt").write_text("x")
    assert _fit("--run", str(junk), "--application", TOY_APPLICATION_PATH) == 2
    assert "refusing" in capsys.readouterr().err
    assert sorted(os.listdir(junk)) == ["file.txt"]
