# SPDX-License-Identifier: Apache-2.0
"""The whole-checkpoint atomic commit: content-named weights, one atomic switch of the record,
the previous record as a fallback, clean folders, and old-layout folders."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lcengine.method import store
from lcengine.method.checkpoint import CONFIG_FILE, PREVIOUS_CONFIG_FILE, WEIGHTS_FILE
from lcengine.method.constraints import LatentConstraints
from lcengine.method.run import CONSTRAINTS_DIR, has_checkpoint
from support.method_toys import NAMES, tiny_training, toy_data, toy_model

warnings.filterwarnings("ignore", message=".*falling back to the eager.*")
warnings.filterwarnings("ignore", message=".*no fused.*")

TESTS_DIR = Path(__file__).resolve().parents[1]


def _unfitted(rows: int = 256) -> LatentConstraints:
    """A LatentConstraints with data and (untrained) networks: enough to save and load."""
    x, a = toy_data(rows)
    lc = LatentConstraints(toy_model(), NAMES, training=tiny_training())
    lc.set_data(x, a)
    return lc


def _save_at(lc: LatentConstraints, folder: Path, step: int) -> None:
    """Saves ``lc`` with realism step count ``step`` (and weights that differ per step)."""
    lc.trainer.realism_step = step
    with torch.no_grad():
        next(lc.trainer.realism.parameters()).add_(0.01)
    lc.save(folder)


def _load_step(folder: Path) -> int:
    return LatentConstraints.load(folder, toy_model()).trainer.realism_step


def _record(folder: Path, name: str = CONFIG_FILE) -> dict:
    return json.loads((folder / name).read_text())


def _weights_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".safetensors"))


def _load_without_warnings(folder: Path) -> LatentConstraints:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return LatentConstraints.load(folder, toy_model())


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, OSError])
def test_checkpoint_survives_kill_between_weights_and_record(tmp_path, monkeypatch, interruption):
    d = tmp_path / "c"
    lc = _unfitted()
    _save_at(lc, d, 10)
    committed = _record(d)

    real_write = store.atomic_write_bytes
    written = []

    def write(path, data):
        if Path(path).name == CONFIG_FILE:  # the switch: interrupted after the weights are down
            assert written and written[0].endswith(".safetensors")
            raise interruption("interrupted")
        written.append(Path(path).name)
        real_write(path, data)

    monkeypatch.setattr(store, "atomic_write_bytes", write)
    with pytest.raises(interruption):
        _save_at(lc, d, 20)
    monkeypatch.undo()

    assert _record(d) == committed  # the record was never replaced
    assert _load_without_warnings(d).trainer.realism_step == 10
    _save_at(lc, d, 20)  # the next save commits and tidies up
    assert _load_without_warnings(d).trainer.realism_step == 20
    assert _record(d, PREVIOUS_CONFIG_FILE)["state"]["realism_step"] == 10
    assert set(_weights_files(d)) == {_record(d)["weights_file"], committed["weights_file"]}


_SAVER = """
import sys
import torch
from lcengine.method.constraints import LatentConstraints
from support.method_toys import NAMES, tiny_training, toy_data, toy_model

x, a = toy_data(4096)  # about 0.2 MB of encodings: each save takes a few milliseconds
lc = LatentConstraints(toy_model(), NAMES, training=tiny_training())
lc.set_data(x, a)
step = int(sys.argv[2])
print("ready", flush=True)
while True:
    step += 1
    lc.trainer.realism_step = step
    with torch.no_grad():
        next(lc.trainer.realism.parameters()).add_(0.01)
    lc.save(sys.argv[1])
    print(step, flush=True)
"""


def test_checkpoint_survives_sigkill_and_sigterm_at_random_points_of_repeated_saves(tmp_path):
    d = tmp_path / "c"
    rng = np.random.default_rng(0)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    env["OMP_NUM_THREADS"] = "1"
    step = 0
    for trial, sig in enumerate([signal.SIGKILL, signal.SIGTERM] * 2):
        p = subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(d), str(step)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        try:
            assert p.stdout.readline().strip() == "ready"
            first = p.stdout.readline().strip()  # one commit done: a checkpoint exists
            assert first.isdigit(), first
            time.sleep(float(rng.uniform(0.0, 0.15)))
            p.send_signal(sig)
            rest = p.stdout.read().split()
        finally:
            p.kill()
            p.wait()
        last = int(([first] + rest)[-1])  # the last commit the saver reported as done
        loaded = _load_without_warnings(d).trainer.realism_step
        assert loaded in (last, last + 1), (trial, sig, last, loaded)
        step = loaded + 1000  # the next saver's steps are told apart from this one's
    # stale temporary files of killed savers go with the next commit
    lc = _unfitted()
    _save_at(lc, d, 1)
    names = sorted(os.listdir(d))
    assert not [n for n in names if n.endswith(".tmp")], names
    assert len(_weights_files(d)) == 2


@pytest.mark.parametrize(
    "damage",
    [
        "flip a weights byte",
        "truncate the record",
        "delete the weights",
        "delete the record",
        "tamper the checksum",
    ],
)
def test_loader_falls_back_to_previous_when_current_is_corrupted(tmp_path, damage):
    d = tmp_path / "c"
    lc = _unfitted()
    _save_at(lc, d, 10)
    _save_at(lc, d, 20)
    rec = _record(d)
    weights = d / rec["weights_file"]
    failing = d / CONFIG_FILE
    if damage == "flip a weights byte":
        blob = bytearray(weights.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        weights.write_bytes(bytes(blob))
        failing, reason = weights, "checksum mismatch"
    elif damage == "truncate the record":
        failing.write_text(failing.read_text()[:50])
        reason = "corrupted JSON"
    elif damage == "delete the weights":
        weights.unlink()
        failing, reason = weights, "missing file"
    elif damage == "delete the record":
        failing.unlink()
        reason = "missing file"
    else:
        rec["weights_sha256"] = rec["weights_sha256"][:16] + "0" * 48
        failing.write_text(json.dumps(rec))
        reason = "checksum mismatch"
    with pytest.warns(RuntimeWarning, match="previous") as record:
        lc2 = LatentConstraints.load(d, toy_model())
    assert lc2.trainer.realism_step == 10
    message = str(record[0].message)
    assert str(failing) in message and reason in message and PREVIOUS_CONFIG_FILE in message


def test_loader_names_both_files_when_nothing_is_loadable(tmp_path):
    d = tmp_path / "c"
    lc = _unfitted()
    _save_at(lc, d, 10)
    _save_at(lc, d, 20)
    for name in (CONFIG_FILE, PREVIOUS_CONFIG_FILE):
        (d / name).write_text("{not json")
    with pytest.raises(ValueError) as e:
        LatentConstraints.load(d, toy_model())
    msg = str(e.value)
    assert "no loadable checkpoint" in msg and CONFIG_FILE in msg and PREVIOUS_CONFIG_FILE in msg
    assert "corrupted JSON" in msg


def test_no_stray_temporary_files_after_commit(tmp_path):
    d = tmp_path / "c"
    lc = _unfitted()
    _save_at(lc, d, 10)
    # what interrupted saves leave: temporary files and weights no record names
    (d / ".constraints.json.abc123.tmp").write_bytes(b"partial")
    (d / ".constraints.0123456789abcdef.safetensors.x.tmp").write_bytes(b"partial")
    (d / "constraints.0123456789abcdef.safetensors").write_bytes(b"orphan")
    (d / "notes.txt").write_text("not ours")  # other files are left alone
    _save_at(lc, d, 20)
    _save_at(lc, d, 30)
    lc.save(d)  # the same weights again: the previous record stays the one of step 20
    names = sorted(os.listdir(d))
    rec, prev = _record(d), _record(d, PREVIOUS_CONFIG_FILE)
    assert names == sorted(
        [
            ".constraints.lock",
            CONFIG_FILE,
            PREVIOUS_CONFIG_FILE,
            rec["weights_file"],
            prev["weights_file"],
            "notes.txt",
        ]
    )
    assert rec["weights_file"] != prev["weights_file"]  # one damaged file never takes both
    assert rec["state"]["realism_step"] == 30 and prev["state"]["realism_step"] == 20


def test_commit_never_replaces_a_weights_file_a_record_names(tmp_path, monkeypatch):
    d = tmp_path / "c"
    lc = _unfitted()
    _save_at(lc, d, 10)
    _save_at(lc, d, 20)
    named = {_record(d)["weights_file"], _record(d, PREVIOUS_CONFIG_FILE)["weights_file"]}
    before = {n: (d / n).read_bytes() for n in named}
    targets = []
    real_write = store.atomic_write_bytes
    monkeypatch.setattr(
        store, "atomic_write_bytes", lambda p, b: targets.append(Path(p).name) or real_write(p, b)
    )
    lc.save(d)  # the same weights as the current record: nothing is rewritten
    _save_at(lc, d, 30)
    assert not named & set(targets), targets
    assert [t for t in targets if t.endswith(".safetensors")] == [_record(d)["weights_file"]]
    for n in named & set(os.listdir(d)):
        assert (d / n).read_bytes() == before[n]


def test_old_layout_folder_still_loads_and_moves_to_the_new_one(tmp_path):
    d = tmp_path / "c"
    lc = _unfitted()
    _save_at(lc, d, 10)
    rec = _record(d)
    os.replace(d / rec.pop("weights_file"), d / WEIGHTS_FILE)  # constraints.safetensors
    (d / CONFIG_FILE).write_text(json.dumps(rec))
    assert _load_without_warnings(d).trainer.realism_step == 10
    _save_at(lc, d, 20)
    assert (d / WEIGHTS_FILE).is_file()  # named by the previous record: kept
    assert _load_without_warnings(d).trainer.realism_step == 20
    _save_at(lc, d, 30)
    assert not (d / WEIGHTS_FILE).exists()  # named by no record any more
    assert _load_without_warnings(d).trainer.realism_step == 30


def test_record_naming_a_file_outside_the_checkpoint_is_refused(tmp_path):
    d = tmp_path / "c"
    _save_at(_unfitted(), d, 10)
    rec = _record(d)
    rec["weights_file"] = "../elsewhere.safetensors"
    (d / CONFIG_FILE).write_text(json.dumps(rec))
    with pytest.raises(ValueError, match=r"constraints\.json key 'weights_file'"):
        LatentConstraints.load(d, toy_model())


def test_has_checkpoint_sees_the_current_or_the_previous_record(tmp_path):
    run = tmp_path / "run"
    assert not has_checkpoint(run)
    lc = _unfitted()
    _save_at(lc, run / CONSTRAINTS_DIR, 10)
    assert has_checkpoint(run)
    _save_at(lc, run / CONSTRAINTS_DIR, 20)
    (run / CONSTRAINTS_DIR / CONFIG_FILE).unlink()
    assert has_checkpoint(run)
    with pytest.warns(RuntimeWarning, match="previous"):
        assert _load_step(run / CONSTRAINTS_DIR) == 10
