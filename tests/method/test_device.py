# SPDX-License-Identifier: Apache-2.0
"""``device=`` plumbing without a GPU: resolution and errors (``torch.cuda.is_available``
monkeypatched), placement of every parameter, buffer and Adam state on the ``meta`` device, and
device-independent checkpoints. CUDA runs themselves are not exercised here."""

import warnings

import numpy as np
import pytest
import torch

from lcengine.cli import main
from lcengine.method.constraints import LatentConstraints
from lcengine.method.data import resolve_device
from lcengine.method.training import ConstraintTrainer, TrainingData
from support.method_toys import (
    NAMES,
    TOY_APPLICATION_PATH,
    tiny_training,
    toy_data,
    toy_model,
)


def _no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _tensors_of_trainer(t: ConstraintTrainer):
    for module in t.modules().values():
        yield from module.parameters()
        yield from module.buffers()
    for opt in t.optimizers().values():
        for st in opt.state.values():
            yield from (v for k, v in st.items() if isinstance(v, torch.Tensor) and k != "step")
    yield t.sigma_bar


def test_resolve_device_strings_and_auto(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("meta") == torch.device("meta")
    _no_cuda(monkeypatch)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("bad", ["gpu0", "cuda:x", "", 3, None, "mps"])
def test_bad_device_is_a_value_error_naming_device(bad):
    with pytest.raises(ValueError, match="device"):
        resolve_device(bad)


def test_cuda_without_cuda_is_refused_everywhere(monkeypatch):
    _no_cuda(monkeypatch)
    with pytest.raises(ValueError, match="device is 'cuda' but CUDA is not available"):
        LatentConstraints(toy_model(), NAMES, device="cuda")
    with pytest.raises(ValueError, match="device"):
        ConstraintTrainer(4, 3, torch.ones(4), tiny_training(), device="cuda:0")
    lc = LatentConstraints(toy_model(), NAMES, device="auto")
    assert lc.device == torch.device("cpu")


def test_trainer_on_meta_places_networks_and_sigma_bar():
    t = ConstraintTrainer(4, 3, torch.ones(4), tiny_training(), device="meta")
    tensors = list(_tensors_of_trainer(t))
    assert tensors and all(x.device.type == "meta" for x in tensors)


def test_trainer_to_moves_adam_state_and_loading_places_it():
    x, att = toy_data(128)
    mu, lv = toy_model().encode_dataset(x)
    data = TrainingData(mu, lv, torch.from_numpy(att).float())
    t = ConstraintTrainer(4, 3, torch.full((4,), 0.1), tiny_training())
    t.train_attribute(data, 3, progress=False)
    t.train_realism_actor(data, 10, progress=False)
    state = t.state_tensors()
    assert all(v.device.type == "cpu" for v in state.values())
    assert any(k.startswith("opt.actor.") for k in state)

    t.to("meta")
    moved = list(_tensors_of_trainer(t))
    assert len(moved) > 20 and all(v.device.type == "meta" for v in moved)

    other = ConstraintTrainer(4, 3, torch.full((4,), 0.1), tiny_training(), device="meta")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # copying into meta parameters is a no-op
        other.load_state_tensors(state, "test")
    placed = list(_tensors_of_trainer(other))
    assert all(v.device.type == "meta" for v in placed)
    assert sum(len(o.state) for o in other.optimizers().values()) > 0


def test_checkpoints_are_device_independent(tmp_path):
    x, att = toy_data(128)
    lc = LatentConstraints(toy_model(), NAMES, training=tiny_training(attribute_steps=5))
    lc.fit(x, att, realism_steps=10, progress=False)
    lc.add_zero_shot_constraint(
        "prod", lambda o: o[:, 4] > 0.3, num_samples=200, steps=5, progress=False
    )
    lc.save(tmp_path / "c")
    cpu = LatentConstraints.load(tmp_path / "c", toy_model(), device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # copying into meta parameters is a no-op
        meta = LatentConstraints.load(tmp_path / "c", toy_model(), device="meta")
    assert meta.device == torch.device("meta")
    assert all(v.device.type == "meta" for v in _tensors_of_trainer(meta.trainer))
    assert all(p.device.type == "meta" for p in meta.zero_shot[0].critic.parameters())
    assert meta.sigma_bar.device.type == "meta"
    for k, v in lc.trainer.state_tensors().items():
        torch.testing.assert_close(cpu.trainer.state_tensors()[k], v, rtol=0, atol=0)

    lc.to("meta")
    assert all(v.device.type == "meta" for v in _tensors_of_trainer(lc.trainer))
    assert all(p.device.type == "meta" for p in lc.zero_shot[0].critic.parameters())


def test_results_and_sampling_on_explicit_cpu_match_the_default():
    x, att = toy_data(128)
    a = LatentConstraints(toy_model(), NAMES, training=tiny_training(attribute_steps=5))
    b = LatentConstraints(
        toy_model(), NAMES, training=tiny_training(attribute_steps=5), device=torch.device("cpu")
    )
    for lc in (a, b):
        lc.fit(x, att, realism_steps=10, progress=False)
    for method in ("actor", "optimize", "baseline"):
        ra = a.sample("a0", 8, method=method, steps=5)
        rb = b.sample("a0", 8, method=method, steps=5)
        assert ra.latents.device.type == "cpu"
        np.testing.assert_array_equal(ra.images, rb.images)


@pytest.mark.parametrize("command", ["fit", "sample", "transform"])
def test_cli_device_errors_name_the_option(monkeypatch, tmp_path, capsys, command):
    _no_cuda(monkeypatch)
    args = {
        "fit": ["fit", "--run", str(tmp_path / "r"), "--application", TOY_APPLICATION_PATH],
        "sample": ["sample", "--run", str(tmp_path / "r"), "--request", "a0"],
        "transform": ["transform", "--run", str(tmp_path / "r"), "--changes", "a0"],
    }[command]
    assert main(args + ["--device", "cuda"]) == 2
    assert "--device is 'cuda' but CUDA is not available" in capsys.readouterr().err
    assert main(args + ["--device", "gpu7"]) == 2
    assert "--device must be" in capsys.readouterr().err


def test_demo_parser_takes_device():
    import argparse

    from lcengine.apps.digits.commands import add_demo_command

    parser = argparse.ArgumentParser()
    add_demo_command(parser.add_subparsers())
    assert parser.parse_args(["demo", "--device", "auto"]).device == "auto"
    assert parser.parse_args(["demo"]).device == "cpu"
