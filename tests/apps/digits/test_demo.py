# SPDX-License-Identifier: Apache-2.0
"""``lcengine demo --fast`` end to end, its outputs, and the run-folder commands on it."""

import json
import warnings

import numpy as np
import pytest
import torch

from lcengine.apps.digits.app import APPLICATION_PATH, prepare_run
from lcengine.apps.digits.conditional import CONDITIONAL_METHODS
from lcengine.apps.digits.config import demo_config
from lcengine.cli import main
from lcengine.method.run import load_run, read_run_file
from lcengine.method.sampling import METHODS

warnings.filterwarnings("ignore", message=".*falling back to the eager.*")
warnings.filterwarnings("ignore", message=".*no fused.*")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    out, cache = root / "out", root / "cache"
    n = torch.get_num_threads()  # the commands set torch's thread count; keep the session's
    try:
        rc = main(
            [
                "demo",
                "--fast",
                "--out",
                str(out),
                "--cache-dir",
                str(cache),
                "--no-progress",
                "--threads",
                "1",
            ]
        )
    finally:
        torch.set_num_threads(n)
    assert rc == 0
    return out, cache


def test_demo_writes_every_output(demo_run):
    out, _ = demo_run
    m = json.loads((out / "metrics.json").read_text())
    for key in (
        "conditional",
        "requests",
        "transforms",
        "transforms_overall",
        "zero_shot",
        "goals",
        "config",
        "timings_seconds",
        "figures",
        "samples",
        "training",
    ):
        assert key in m, key
    for row in ("real", "reconstruction") + METHODS:
        r = m["conditional"][row]
        assert 0.0 <= r["overall_accuracy"] <= 1.0 and r["fcd"] >= 0.0
        assert r["diversity_vs_real"] >= 0.0
        for name in ("digit_7", "thick", "slant_right"):
            assert set(r["per_attribute"][name]) >= {"accuracy", "precision", "recall", "f1"}
    chance = m["conditional"]["chance"]  # real images against shuffled targets
    assert chance["per_group"]["digit"]["accuracy"] < m["conditional"]["real"]["row_accuracy"]
    assert "diversity (x real)" in (out / "report.md").read_text()
    for goal in m["goals"].values():
        assert isinstance(goal["met"], bool)
    t = m["transforms_overall"]
    assert 0.0 <= t["converged_fraction"] <= 1.0
    for change in m["transforms"].values():
        assert {
            "converged_fraction",
            "mean_steps",
            "mean_latent_distance",
            "mean_pixel_distance",
        } <= set(change["optimize"])

    report = (out / "report.md").read_text()
    assert "Quality goals" in report and "FCD" in report and "--fast" in report
    timing = json.loads((out / "metrics.json").read_text())["optimizer_timing"]
    assert timing["backend"] == "native" and timing["fused_seconds"] > 0
    assert timing["eager_seconds"] > 0 and timing["same_steps_fraction"] >= 0.9
    assert "fused `native` optimizer" in report and "eager autograd loop" in report
    for rel in m["figures"]:
        assert (out / rel).read_bytes()[:8] == PNG_MAGIC, rel
    names = {p.name for p in (out / "figures").iterdir()}
    assert "training_curves.png" in names and "zero_shot.png" in names
    assert any(n.startswith("request_") for n in names)
    assert any(n.startswith("transform_") for n in names)
    assert not [p for p in out.rglob("*.tmp")]  # atomic writes leave no temporaries
    application, config = read_run_file(out)  # a method run folder naming its application
    assert application == APPLICATION_PATH and config == m["config"]

    with np.load(out / "samples.npz", allow_pickle=False) as s:
        images, attrs = s["images"], s["attributes"]
        n, a = attrs.shape
        assert images.shape == (n, 28, 28) and images.dtype == np.float32
        assert 0.0 <= images.min() and images.max() <= 1.0
        assert attrs.dtype == np.int8 and set(np.unique(attrs)) <= {0, 1}
        names = list(s["attribute_names"])
        assert len(names) == a and names[:3] == ["digit_0", "digit_1", "digit_2"]
        assert "thick" in names and "slant_right" in names and "top_heavy" in names
        assert s["method"].shape == (n,)
        assert set(s["method"]) == set(METHODS) | set(CONDITIONAL_METHODS)
        assert s["requested_mask"].shape == (n, a) and s["requested_mask"].dtype == bool
        assert s["measured"].shape == (n, a)


def test_demo_reports_the_decoder_only_model(demo_run):
    """The GAN generator goes through fit and sampling in the demo and is scored like the VAE:
    its table in metrics.json and report.md, its samples in samples.npz and a figure."""
    out, cache = demo_run
    m = json.loads((out / "metrics.json").read_text())
    dec = m["decoder_only"]
    assert dec["info"]["rows"] == m["conditional_info"]["rows"]
    assert dec["info"]["labelled_prior_samples"] == m["config"]["gan_label_samples"]
    assert dec["info"]["realism_steps"] == m["config"]["gan_training"]["realism_steps"]
    assert set(dec["conditional"]) == set(METHODS)
    for method in ("prior", "actor", "optimize"):  # the baseline may lack a digit's latents
        r = dec["conditional"][method]
        assert 0.0 <= r["per_group"]["digit"]["accuracy"] <= 1.0 and r["fcd"] >= 0.0
    assert m["timings_seconds"]["gan_constraints"] > 0
    report = (out / "report.md").read_text()
    assert "## A decoder-only model: a GAN generator" in report
    assert "optimizer, then the generator" in report
    assert (out / "figures" / "gan_heldout.png").read_bytes()[:8] == PNG_MAGIC
    with np.load(out / "samples.npz", allow_pickle=False) as s:
        gan = s["model"] == "gan"
        assert gan.sum() == m["samples"]["models"]["gan"] > 0
        assert set(s["method"][gan]) <= set(METHODS)
    assert (out / "gan" / "gan.json").is_file()
    assert (out / "gan_constraints" / "constraints.json").is_file()
    assert any(p.name.startswith("mnist_gan-") for p in cache.iterdir())  # cached like the VAE
    run = load_run(out)
    ctx = run.context
    assert ctx.gan is not None and ctx.gan_constraints is not None
    assert not ctx.gan_constraints.model.has_encoder
    res = ctx.gan_constraints.sample("3 thick", 2, method="actor", seed=1)
    assert res.images.shape == (2, 28, 28)


def test_demo_compares_the_conditional_models(demo_run):
    """Every conditional model generates for the same targets and is scored in the same way,
    with its training seconds; its samples are in samples.npz under its method name."""
    out, cache = demo_run
    m = json.loads((out / "metrics.json").read_text())
    cm = m["conditional_models"]
    assert set(cm) == set(CONDITIONAL_METHODS)
    for name, r in cm.items():
        assert 0.0 <= r["per_group"]["digit"]["accuracy"] <= 1.0, name
        assert r["fcd"] >= 0.0 and r["diversity_vs_real"] >= 0.0 and r["train_seconds"] > 0
        assert r["retrains"] == (name != "latent_gmm")
    report = (out / "report.md").read_text()
    assert "## Why not retrain a conditional model?" in report and "conditional GAN" in report
    assert (out / "figures" / "conditional_models.png").read_bytes()[:8] == PNG_MAGIC
    overall = m["transforms_overall"]
    assert 0.0 <= overall["measured_success"] <= 1.0
    assert 0.0 <= overall["unrequested_preserved"] <= 1.0
    assert "**measured success" in report
    with np.load(out / "samples.npz", allow_pickle=False) as s:
        for name in CONDITIONAL_METHODS:
            rows = s["method"] == name
            assert rows.sum() == m["conditional_info"]["rows"] and (s["model"][rows] == name).all()
            assert not s["accepted"][rows].any()  # no critic verdict for them


def test_run_folder_commands(demo_run, tmp_path, capsys):
    out, cache = demo_run
    npz, png = tmp_path / "s.npz", tmp_path / "s.png"
    assert (
        main(
            [
                "sample",
                "--run",
                str(out),
                "--request",
                "7 thick",
                "-n",
                "4",
                "--method",
                "optimize",
                "--steps",
                "5",
                "--start",
                "actor",
                "--out",
                str(npz),
                "--png",
                str(png),
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 4 and "digit_7" in summary["requested"]
    with np.load(npz) as s:
        assert s["images"].shape == (4, 28, 28) and s["attributes"][:, 7].tolist() == [1] * 4
    assert png.read_bytes()[:8] == PNG_MAGIC

    assert (
        main(
            [
                "transform",
                "--run",
                str(out),
                "--changes",
                "slant_right",
                "--heldout",
                "3",
                "--steps",
                "5",
                "--out",
                str(tmp_path / "t.npz"),
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 3 and len(summary["per_row"]) == 3
    inp = tmp_path / "in.npy"
    np.save(inp, np.zeros((2, 28, 28), np.float32))
    assert (
        main(
            [
                "transform",
                "--run",
                str(out),
                "--changes",
                "top_heavy",
                "--input",
                str(inp),
                "--steps",
                "3",
            ]
        )
        == 0
    )
    capsys.readouterr()

    # fit continues from the saved step count
    before = json.loads((out / "constraints" / "constraints.json").read_text())["state"]
    assert (
        main(
            [
                "fit",
                "--run",
                str(out),
                "--realism-steps",
                str(before["realism_step"] + 10),
                "--no-progress",
            ]
        )
        == 0
    )
    after = json.loads((out / "constraints" / "constraints.json").read_text())["state"]
    assert after["realism_step"] == before["realism_step"] + 10
    assert after["attribute_step"] == before["attribute_step"]
    capsys.readouterr()


def test_command_errors(demo_run, tmp_path, capsys):
    out, _ = demo_run
    assert main(["sample", "--run", str(out), "--request", "purple"]) == 2
    assert "unknown attribute name" in capsys.readouterr().err
    assert main(["sample", "--run", str(out), "--request", ""]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["sample", "--run", str(tmp_path / "none"), "--request", "7"]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 5), np.float32))
    assert main(["transform", "--run", str(out), "--changes", "thick", "--input", str(bad)]) == 2
    assert "28, 28" in capsys.readouterr().err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    assert main(["fit", "--run", str(tmp_path / "junk")]) == 2
    assert "refusing" in capsys.readouterr().err
    assert main(["fit", "--run", str(out), "--actor-attribute-weight", "3"]) == 2
    assert "new runs only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "--run", str(tmp_path / "new"), "--actor-attribute-weight", "nan"])
    assert "finite number >= 0" in capsys.readouterr().err


def test_fit_sets_the_actor_attribute_weight_of_a_new_run(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["fit", "--run", str(out), "--fast", "--actor-attribute-weight", "2.5"]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(argv) == 0
    assert read_run_file(out)[1]["training"]["actor_attribute_weight"] == 2.5
    assert load_run(out).constraints.training.actor_attribute_weight == 2.5


def test_corrupted_checkpoint_is_reported(demo_run, tmp_path, capsys):
    import shutil

    out, _ = demo_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)

    def named_weights(folder, record):
        return folder / json.loads((folder / record).read_text())["weights_file"]

    c = copy / "constraints"
    current = named_weights(c, "constraints.json")
    current.write_bytes(current.read_bytes()[:1000])  # truncated
    # the previous checkpoint is loaded, with a warning naming the damaged file
    with pytest.warns(RuntimeWarning, match=str(current).replace(".", r"\.")):
        assert main(["sample", "--run", str(copy), "--request", "3", "-n", "2"]) == 0
    capsys.readouterr()
    previous = named_weights(c, "constraints.previous.json")
    previous.write_bytes(b"garbage")
    assert main(["sample", "--run", str(copy), "--request", "3"]) == 2
    err = capsys.readouterr().err
    assert current.name in err and previous.name in err and "checksum mismatch" in err
    v = named_weights(copy / "vae", "vae.json")
    v.write_bytes(b"garbage")
    assert main(["sample", "--run", str(copy), "--request", "3"]) == 2
    assert v.name in capsys.readouterr().err


def test_demo_resumes_an_interrupted_fit(tmp_path):
    """A demo folder holding a checkpoint of the same config continues from it."""
    cfg = demo_config(fast=True)
    cfg.training.realism_steps = 20
    cache = tmp_path / "cache"
    logs = []
    run = prepare_run(tmp_path / "r", cfg, cache=cache, progress=False, log=logs.append)
    assert run.constraints.trainer.realism_step == 20
    cfg2 = demo_config(fast=True)
    cfg2.training.realism_steps = 20
    run2 = prepare_run(tmp_path / "r", cfg2, cache=cache, progress=False, log=logs.append)
    assert any("resuming" in msg for msg in logs)
    assert run2.constraints.trainer.realism_step == 20
