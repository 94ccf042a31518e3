# SPDX-License-Identifier: Apache-2.0
"""LatentConstraints on a synthetic model: every sampling method, transforms, checkpoints."""

import json
import warnings

import numpy as np
import pytest
import torch

from lcengine.method import LatentConstraints, LatentModel, SamplingConfig
from support.method_toys import NAMES, tiny_training, toy_data, toy_model

warnings.filterwarnings("ignore", message=".*falling back to the eager.*")
warnings.filterwarnings("ignore", message=".*no fused.*")


@pytest.fixture(scope="module")
def fitted():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    x, att = toy_data(512)
    lc = LatentConstraints(
        toy_model(),
        NAMES,
        training=tiny_training(attribute_steps=400, realism_steps=150),
        sampling=SamplingConfig(steps=60, lr=0.1, w_dist=0.001),
        transform=SamplingConfig(steps=60, lr=0.1, w_dist=0.001),
    )
    lc.fit(x, att, progress=False)
    torch.set_num_threads(n)
    return lc, x, att


@pytest.mark.parametrize("method", ["prior", "actor", "optimize", "baseline"])
def test_sample_methods(fitted, method):
    lc, _, _ = fitted
    res = lc.sample("a0 !a1", 12, method=method, seed=3)
    assert res.latents.shape == (12, 4) and res.images.shape == (12, 5)
    assert res.images.dtype == np.float32
    assert res.attributes.shape == (12, 3) and res.mask.shape == (12, 3)
    assert (res.attributes[:, 0] == 1).all() and (res.attributes[:, 1] == 0).all()
    assert res.mask[:, :2].all() and not res.mask[:, 2].any()
    assert res.converged.shape == (12,) and res.steps.shape == (12,)
    again = lc.sample("a0 !a1", 12, method=method, seed=3)
    assert torch.equal(res.latents, again.latents)  # seeded


def test_optimizer_samples_satisfy_the_request(fitted):
    lc, _, _ = fitted
    res = lc.sample({"a0": 1, "a1": 0}, 32, method="optimize", seed=1, tau_a=0.9)
    z = res.latents.numpy()
    hit = ((z[:, 0] > 0) & (z[:, 1] < 0))[res.converged]
    assert res.converged.mean() > 0.7 and hit.mean() > 0.9


def test_optimizer_can_start_from_the_actor(fitted):
    """start="actor": the optimizer runs from the actor's output for the prior samples, which
    is the same as passing that output as z_start with the default start."""
    lc, _, _ = fitted
    actor = lc.sample("a0 !a1", 16, method="actor", seed=5)
    refined = lc.sample("a0 !a1", 16, method="optimize", seed=5, start="actor")
    same = lc.generate(refined.attributes, refined.mask, method="optimize", z_start=actor.latents)
    assert torch.allclose(refined.latents, same.latents, atol=1e-6)
    assert (refined.steps == same.steps).all()
    plain = lc.sample("a0 !a1", 16, method="optimize", seed=5)
    assert not torch.allclose(refined.latents, plain.latents)
    # a transform with start="actor" starts from the actor's output for the encoding
    x = np.random.default_rng(0).random((6, 5), dtype=np.float32)
    tr_actor = lc.transform(x, "a0", method="actor")
    tr = lc.transform(x, "a0", start="actor", steps=1, tau_r=0.999, tau_a=0.999)
    # one Adam step moves each coordinate by at most lr (0.1) from where it starts
    assert (tr.latents - tr_actor.latents).abs().max() <= 0.1 + 1e-4
    assert (tr_actor.latents - tr.source_latents).abs().max() > 0.3
    with pytest.raises(ValueError, match="start must be one of"):
        lc.sample("a0", 2, method="optimize", start="encoder")


def test_transform_changes_only_requested(fitted):
    lc, x, att = fitted
    src = x[att[:, 0] == 0][:10]
    tr = lc.transform(src, "a0")
    assert tr.latents.shape == (10, 4) and tr.images.shape == (10, 5)
    assert tr.source_images.shape == (10, 5)
    assert tr.latent_distance.shape == (10,) and tr.pixel_distance.shape == (10,)
    assert tr.mask[:, 0].all() and not tr.mask[:, 1:].any()
    s = tr.summary()
    assert set(s) == {
        "converged_fraction",
        "mean_steps",
        "mean_latent_distance",
        "mean_pixel_distance",
        "num_rows",
    }
    moved = tr.latents[tr.converged.tolist()]
    assert (moved[:, 0] > 0).float().mean() > 0.8
    base = lc.transform(src, "a0", method="baseline")
    assert base.steps.sum() == 0


def test_save_load_roundtrip_and_resume(fitted, tmp_path):
    lc, x, att = fitted
    lc.save(tmp_path / "ckpt")
    back = LatentConstraints.load(tmp_path / "ckpt", toy_model())
    a = lc.sample("a2", 8, method="actor", seed=5)
    b = back.sample("a2", 8, method="actor", seed=5)
    assert torch.equal(a.latents, b.latents)
    assert back.trainer.realism_step == lc.trainer.realism_step
    # resume: continuing a saved run equals training straight through
    cfg = dict(attribute_steps=30, realism_steps=30)
    straight = LatentConstraints(toy_model(), NAMES, training=tiny_training(**cfg))
    straight.fit(x, att, progress=False, realism_steps=50)
    part = LatentConstraints(toy_model(), NAMES, training=tiny_training(**cfg))
    part.fit(x, att, progress=False)
    part.save(tmp_path / "part")
    resumed = LatentConstraints.load(tmp_path / "part", toy_model())
    resumed.fit(x, att, realism_steps=50, progress=False)  # checkpoints hold no data
    wa, wb = straight.trainer.state_tensors(), resumed.trainer.state_tensors()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_checkpoint_errors(fitted, tmp_path):
    lc, _, _ = fitted
    d = lc.save(tmp_path / "c")
    # a model of another latent size
    other = LatentModel.from_callables(
        lambda x: (x[:, :3], x[:, :3] * 0),
        lambda z: torch.cat([z, z[:, :2]], 1),
        3,
        data_shape=(5,),
    )
    with pytest.raises(ValueError, match="latent_dim"):
        LatentConstraints.load(d, other)
    # corrupted tensor file (the one the record names)
    w = d / json.loads((d / "constraints.json").read_text())["weights_file"]
    blob = bytearray(w.read_bytes())
    blob[100] ^= 0xFF
    w.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="checksum mismatch"):
        LatentConstraints.load(d, toy_model())
    # truncated JSON
    (d / "constraints.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupted JSON"):
        LatentConstraints.load(d, toy_model())
    with pytest.raises(ValueError, match="missing file"):
        LatentConstraints.load(tmp_path / "nowhere", toy_model())
    # a consistent pair whose config describes other networks
    d2 = lc.save(tmp_path / "c2")
    cfg = json.loads((d2 / "constraints.json").read_text())
    cfg["training"]["hidden"] = [16, 16]
    (d2 / "constraints.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="shape"):
        LatentConstraints.load(d2, toy_model())


def test_bad_requests_and_inputs(fitted):
    lc, x, _ = fitted
    with pytest.raises(ValueError, match="unknown attribute name"):
        lc.sample("purple", 4)
    with pytest.raises(ValueError, match="empty"):
        lc.sample("", 4)
    with pytest.raises(ValueError, match="length 3"):
        lc.sample(np.array([1, 0]), 4)
    with pytest.raises(ValueError, match="method"):
        lc.sample("a0", 4, method="magic")
    with pytest.raises(ValueError, match="n must be"):
        lc.sample("a0", 0)
    with pytest.raises(ValueError, match="NaN"):
        lc.generate(np.ones((2, 3)), None, z_start=torch.full((2, 4), float("inf")))
    with pytest.raises(ValueError, match=r"y must have shape \[N, 3\]"):
        lc.generate(np.ones((2, 4)), None)
    with pytest.raises(ValueError, match="at least one requested"):
        lc.generate(np.ones((2, 3)), np.zeros((2, 3), bool))
    with pytest.raises(ValueError, match="x must have shape"):
        lc.transform(np.zeros((2, 7), np.float32), "a0")
    fresh = LatentConstraints(toy_model(), NAMES)
    with pytest.raises(RuntimeError, match="fit"):
        fresh.sample("a0", 2)
    with pytest.raises(ValueError, match="attributes must have shape"):
        fresh.fit(x, np.zeros((len(x), 2), np.int8), progress=False)


def test_vocabulary_is_used_and_saved(fitted, tmp_path):
    from lcengine.method import RequestVocabulary

    x, att = toy_data(256)
    vocab = RequestVocabulary(negation_aliases={"left": "a0"}, shorthands={"up": "a1"})
    lc = LatentConstraints(
        toy_model(),
        NAMES,
        vocabulary=vocab,
        training=tiny_training(attribute_steps=5, realism_steps=5),
    )
    lc.fit(x, att, progress=False)
    values, mask = lc.parse("left up")
    assert values.tolist() == [0, 1, 0] and mask.tolist() == [True, True, False]
    back = LatentConstraints.load(lc.save(tmp_path / "v"), toy_model())
    assert back.vocabulary == vocab
    assert back.parse("left up")[0].tolist() == [0, 1, 0]


def test_evaluate_methods_and_time_optimizer(fitted):
    from lcengine.method.metrics import evaluate_methods
    from lcengine.method.timing import time_optimizer
    from support.method_toys import toy_attributes

    lc, _, att = fitted
    y = att[:16]
    metrics, samples = evaluate_methods(
        lc,
        y,
        None,
        measure=lambda out: toy_attributes(out),
        features=lambda out: out,
        reference_features=toy_data(64, seed=3)[0],
        seed=1,
    )
    assert set(metrics) == {"prior", "actor", "optimize", "baseline"} == set(samples)
    for m in metrics.values():
        assert 0.0 <= m["overall_accuracy"] <= 1.0 and m["fcd"] >= 0.0
        assert {"accepted_fraction", "mean_steps", "seconds"} <= set(m)
    # the critics' optimizer must beat unconstrained prior samples on the requested attributes
    assert metrics["optimize"]["overall_accuracy"] > metrics["prior"]["overall_accuracy"]
    timing = time_optimizer(lc, y, None, seed=1, repeats=1, steps=10)
    assert timing["rows"] == 16 and timing["max_steps"] == 10
    assert timing["fused_seconds"] > 0 and timing["eager_seconds"] > 0
    with pytest.raises(ValueError, match="repeats"):
        time_optimizer(lc, y, None, repeats=0)
