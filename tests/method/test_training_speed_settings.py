# SPDX-License-Identifier: Apache-2.0
"""The trainer's speed settings: ``TrainingConfig.autocast="bf16"`` (the updates' products in
bfloat16, everything the optimizers hold float32) and ``compile_steps`` (the same math through
torch.compile); bad settings are refused by name."""

import dataclasses

import numpy as np
import pytest
import torch

from lcengine.method.config import TrainingConfig
from lcengine.method.constraints import LatentConstraints
from lcengine.method.data import LatentSamples
from lcengine.method.training import ConstraintTrainer
from support.method_toys import NAMES, tiny_training, toy_data, toy_model

TINY = tiny_training(
    attribute_batch_size=32, attribute_steps=3, realism_steps=10, log_every=1, seed=3
)


def _source(n: int = 256) -> LatentSamples:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((n, 4)).astype(np.float32)
    return LatentSamples(z, (z[:, :3] > 0).astype(np.int8))


def _grads_after_one_update(activation: str, autocast: str) -> dict:
    cfg = dataclasses.replace(TINY, activation=activation, autocast=autocast)
    trainer = ConstraintTrainer(4, 3, torch.ones(4), cfg)
    data = _source()
    trainer.train_attribute(data, 1, progress=False)
    trainer.train_realism_actor(data, cfg.actor_every, progress=False)  # one actor update too
    out = {}
    for name, net in trainer.modules().items():
        for k, p in net.named_parameters():
            assert p.dtype == torch.float32 and p.grad is not None
            assert p.grad.dtype == torch.float32, f"{name}.{k} grad {p.grad.dtype}"
            out[f"{name}.{k}"] = p.grad.clone()
    for opt in trainer.optimizers().values():
        for st in opt.state.values():
            assert st["exp_avg"].dtype == torch.float32
    return out


@pytest.mark.parametrize("activation", ["relu", "softplus"])  # hand-derived and autograd
def test_bf16_autocast_computes_in_bfloat16_and_keeps_float32_state(activation):
    ref = _grads_after_one_update(activation, "off")
    bf = _grads_after_one_update(activation, "bf16")
    rel = {
        k: float((bf[k] - ref[k]).norm() / ref[k].norm().clamp_min(1e-12))
        for k in ref
        if ref[k].norm() > 1e-6
    }
    # bfloat16 keeps 8 significant bits: the gradients move (autocast is in effect) but stay
    # close to float32's
    assert max(rel.values()) > 1e-4, rel
    assert np.median(list(rel.values())) < 0.1, rel


def test_bf16_fit_saves_and_continues(tmp_path):
    x, y = toy_data(256)
    cfg = dataclasses.replace(TINY, autocast="bf16")
    lc = LatentConstraints(toy_model(), NAMES, training=cfg)
    lc.fit(x, y, progress=False, checkpoint_dir=tmp_path / "c")
    h = lc.trainer.history
    assert all(np.isfinite(h["realism"]["loss"])) and all(np.isfinite(h["actor"]["loss"]))
    back = LatentConstraints.load(tmp_path / "c", toy_model())
    assert back.training.autocast == "bf16"
    back.fit(x, y, realism_steps=20, progress=False)
    assert back.trainer.realism_step == 20


def test_autocast_settings_are_checked():
    with pytest.raises(ValueError, match="autocast"):
        TrainingConfig(autocast="fp16")
    with pytest.raises(ValueError, match="training.autocast.*meta"):
        ConstraintTrainer(
            4, 3, torch.ones(4), dataclasses.replace(TINY, autocast="bf16"), device="meta"
        )
    with pytest.raises(ValueError, match="autocast"):
        TrainingConfig.from_dict({"autocast": "yes"})


def test_compiled_steps_train_like_the_plain_steps():
    """``compile_steps`` runs the same hand-derived math through torch.compile."""
    data = _source()
    nets = {}
    for flag in (False, True):
        cfg = dataclasses.replace(TINY, compile_steps=flag, realism_steps=20)
        trainer = ConstraintTrainer(4, 3, torch.ones(4), cfg)
        assert trainer.hand_derived
        trainer.train_attribute(data, cfg.attribute_steps, progress=False)
        trainer.train_realism_actor(data, cfg.realism_steps, progress=False)
        assert trainer.actor_step == 2
        nets[flag] = trainer.state_tensors()
    for k, v in nets[False].items():
        torch.testing.assert_close(nets[True][k], v, rtol=1e-4, atol=1e-5, msg=k)
    with pytest.raises(ValueError, match="compile_steps"):
        TrainingConfig.from_dict({"compile_steps": 1})
