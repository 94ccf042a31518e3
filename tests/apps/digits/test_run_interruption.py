# SPDX-License-Identifier: Apache-2.0
"""The digits' run preparation under a stop request and a concurrent writer."""

import threading
import warnings

import pytest

from lcengine.apps.digits.app import prepare_run
from lcengine.apps.digits.config import demo_config
from lcengine.apps.digits.demo import run_demo
from lcengine.method import store
from lcengine.method.run import has_checkpoint, load_run

warnings.filterwarnings("ignore", message=".*falling back to the eager.*")
warnings.filterwarnings("ignore", message=".*no fused.*")


def test_prepare_run_stops_when_requested_and_resumes(tmp_path):
    cfg = demo_config(fast=True)
    cfg.training.realism_steps = 20
    folder, cache = tmp_path / "r", tmp_path / "cache"
    polls = []

    def stop_requested() -> bool:
        polls.append(1)
        return len(polls) > cfg.training.attribute_steps + 7  # 7 realism updates

    run = prepare_run(
        folder, cfg, cache=cache, progress=False, log=lambda m: None, stop_requested=stop_requested
    )
    assert run.constraints.fit_stopped and run.constraints.trainer.realism_step == 7
    assert run.constraints.zero_shot == []  # the stop came before the zero-shot stage
    assert has_checkpoint(folder)
    assert load_run(folder).constraints.trainer.realism_step == 7
    again = prepare_run(folder, cfg, cache=cache, progress=False, log=lambda m: None)
    assert again.constraints.trainer.realism_step == 20
    assert [c.name for c in again.constraints.zero_shot] == [cfg.zero_shot_rule]


def test_demo_refuses_a_folder_another_writer_holds(tmp_path):
    folder = tmp_path / "out"
    held, release = threading.Event(), threading.Event()

    def writer():
        with store.writer_lock(folder, "--out"):
            held.set()
            release.wait(60)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert held.wait(60)
        with pytest.raises(RuntimeError, match=f"--out {folder}: another thread"):
            run_demo(folder, fast=True, cache_dir=tmp_path / "cache", progress=False)
        with pytest.raises(RuntimeError, match=f"run folder {folder}: another thread"):
            prepare_run(folder, demo_config(fast=True), cache=None, progress=False)
    finally:
        release.set()
        t.join()
