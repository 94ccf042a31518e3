# SPDX-License-Identifier: Apache-2.0
"""Run folders and the fit/sample/transform commands, on a toy application (no data set)."""

import json
import warnings

import numpy as np
import pytest
import torch

from lcengine.cli import main
from lcengine.method.run import (
    RUN_FILE,
    load_run,
    read_run_file,
    resolve_application,
    write_run_file,
)
from support.method_toys import TOY_APPLICATION, TOY_APPLICATION_PATH, rule_positive_product

warnings.filterwarnings("ignore", message=".*falling back to the eager.*")
warnings.filterwarnings("ignore", message=".*no fused.*")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy") / "run"
    n = torch.get_num_threads()
    try:
        assert (
            main(
                [
                    "fit",
                    "--run",
                    str(folder),
                    "--application",
                    TOY_APPLICATION_PATH,
                    "--no-progress",
                ]
            )
            == 0
        )
    finally:
        torch.set_num_threads(n)
    return folder


def test_fit_creates_a_run_folder_of_the_application(toy_run):
    path, config = read_run_file(toy_run)
    assert path == TOY_APPLICATION_PATH and config["training"]["realism_steps"] == 40
    run = load_run(toy_run)
    assert run.application is TOY_APPLICATION and run.context is None
    assert run.constraints.trainer.realism_step == 40
    assert run.model.data_shape == (5,)


def test_sample_and_transform_commands(toy_run, tmp_path, capsys):
    npz = tmp_path / "s.npz"
    assert (
        main(
            [
                "sample",
                "--run",
                str(toy_run),
                "--request",
                "a0 !a1",
                "-n",
                "4",
                "--method",
                "optimize",
                "--steps",
                "5",
                "--out",
                str(npz),
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 4 and summary["requested"] == ["a0", "a1"]
    assert 0.0 <= summary["measured_accuracy_on_requested"] <= 1.0
    with np.load(npz) as s:
        assert s["images"].shape == (4, 5) and s["measured"].shape == (4, 3)
        assert s["attributes"][:, 0].tolist() == [1] * 4

    assert (
        main(
            [
                "transform",
                "--run",
                str(toy_run),
                "--changes",
                "a2",
                "--heldout",
                "3",
                "--steps",
                "5",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 3 and len(summary["per_row"]) == 3
    assert 0.0 <= summary["measured_success"] <= 1.0
    inp = tmp_path / "in.npy"
    np.save(inp, np.zeros((2, 5), np.float32))
    assert (
        main(
            [
                "transform",
                "--run",
                str(toy_run),
                "--changes",
                "a0",
                "--input",
                str(inp),
                "--steps",
                "3",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["rows"] == 2


def test_command_errors(toy_run, tmp_path, capsys):
    assert main(["sample", "--run", str(toy_run), "--request", "purple"]) == 2
    assert "unknown attribute name" in capsys.readouterr().err
    assert (
        main(["sample", "--run", str(toy_run), "--request", "a0", "--png", str(tmp_path / "x.png")])
        == 2
    )
    assert "2-D images" in capsys.readouterr().err  # toy outputs are vectors
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 4), np.float32))
    assert main(["transform", "--run", str(toy_run), "--changes", "a0", "--input", str(bad)]) == 2
    assert "[N, 5]" in capsys.readouterr().err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    assert (
        main(["fit", "--run", str(tmp_path / "junk"), "--application", TOY_APPLICATION_PATH]) == 2
    )
    assert "refusing" in capsys.readouterr().err


def test_fit_continues_and_updates_the_application_config(toy_run, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(toy_run, folder)
    n = torch.get_num_threads()
    try:
        assert main(["fit", "--run", str(folder), "--realism-steps", "50", "--no-progress"]) == 0
    finally:
        torch.set_num_threads(n)
    assert load_run(folder).constraints.trainer.realism_step == 50
    assert read_run_file(folder)[1]["training"]["realism_steps"] == 50


def test_fit_takes_the_speed_settings_on_new_and_continued_runs(tmp_path, capsys):
    folder = tmp_path / "bf16"
    argv = ["fit", "--run", str(folder), "--application", TOY_APPLICATION_PATH, "--no-progress"]
    n = torch.get_num_threads()
    try:
        assert main(argv + ["--autocast", "bf16"]) == 0
        assert read_run_file(folder)[1]["training"]["autocast"] == "bf16"
        assert load_run(folder).constraints.training.autocast == "bf16"
        assert main(argv[:3] + ["--realism-steps", "50", "--autocast", "off"]) == 0
        assert read_run_file(folder)[1]["training"]["autocast"] == "off"
        assert load_run(folder).constraints.trainer.realism_step == 50
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:  # argparse names the argument and the choices
            main(argv[:3] + ["--autocast", "fp16"])
        assert exc.value.code == 2 and "--autocast: invalid choice" in capsys.readouterr().err
        assert main(argv[:3] + ["--autocast", "bf16", "--device", "meta"]) == 2
        assert "training.autocast" in capsys.readouterr().err
    finally:
        torch.set_num_threads(n)


def test_zero_shot_rules_come_back_from_the_application(toy_run, tmp_path):
    import shutil

    folder = tmp_path / "zs"
    shutil.copytree(toy_run, folder)
    run = load_run(folder)
    run.constraints.add_zero_shot_constraint(
        "prod", rule_positive_product, num_samples=200, hidden=(8,), steps=5, progress=False
    )
    run.constraints.save(folder / "constraints")
    again = load_run(folder)
    assert set(again.constraints.rules()) == {"prod"}
    assert again.measure(np.ones((2, 5), np.float32)).shape == (2, 4)


def test_bad_run_folders(toy_run, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_run(tmp_path / "none")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / RUN_FILE).write_text(json.dumps({"format": "lcengine.run/1", "config": {}}))
    with pytest.raises(ValueError, match="is not an lcengine run file"):
        load_run(tmp_path / "r")
    write_run_file(tmp_path / "r", "no_such_module_xyz:APP", {})
    with pytest.raises(ValueError, match="cannot be imported"):
        load_run(tmp_path / "r")
    with pytest.raises(ValueError, match="lacks the methods"):
        resolve_application("support.method_toys:NAMES")
    with pytest.raises(ValueError, match="module:attribute"):
        resolve_application("support.method_toys")


def test_sample_and_transform_refuse_bad_output_paths_before_the_work(tmp_path, capsys):
    missing_run = str(tmp_path / "no_run")  # the output check comes first: no run is read
    assert main(["sample", "--run", missing_run, "--request", "a0", "--out", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err
    (tmp_path / "f").write_bytes(b"")
    png = str(tmp_path / "f" / "x.png")
    assert main(["transform", "--run", missing_run, "--changes", "a0", "--png", png]) == 2
    assert "--png" in capsys.readouterr().err


@pytest.mark.parametrize("every,saves", [(10, 5), (0, 1)])
def test_fit_honours_checkpoint_every_on_a_new_run(tmp_path, monkeypatch, every, saves):
    from lcengine.method import checkpoint

    calls = []
    real_save = checkpoint.save_constraints
    monkeypatch.setattr(
        checkpoint, "save_constraints", lambda *a, **k: calls.append(1) or real_save(*a, **k)
    )
    args = ["fit", "--run", str(tmp_path / "r"), "--application", TOY_APPLICATION_PATH]
    assert main(args + ["--checkpoint-every", str(every), "--no-progress"]) == 0
    # 40 realism updates: every 10 (4 saves) and once at the end, or at the end only
    assert len(calls) == saves


def test_sample_refuses_a_count_beyond_memory_before_the_work(toy_run, capsys):
    assert main(["sample", "--run", str(toy_run), "--request", "a0", "-n", str(10**12)]) == 2
    err = capsys.readouterr().err
    assert "-n 1000000000000 needs about" in err and "sample in batches" in err
