# SPDX-License-Identifier: Apache-2.0
"""The latent optimizer, request completion, and LatentConstraints on a synthetic model."""
import json
import warnings

import numpy as np
import pytest
import torch

import lcengine
from lcengine.method import LatentConstraints, SamplingConfig
from lcengine.method.sampling import (
    complete_requests,
    constraint_satisfied,
    optimize_latents_eager,
)

from method_toys import NAMES, tiny_training, toy_data, toy_model

warnings.filterwarnings("ignore", message=".*falling back to the eager.*")
warnings.filterwarnings("ignore", message=".*no fused.*")


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny networks: one thread is faster, and immune to oversubscribed CI machines
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# Analytic critics: realistic where z0 > 1; attribute k is "z_{k+1} > 0".
def realism_fn(z, y):
    return 4.0 * (z[:, 0] - 1.0)


def attribute_fn(z):
    return 4.0 * z[:, 1:3]


def test_constraint_satisfied_rule():
    r = torch.tensor([1.0, 1.0, -1.0, 1.0])
    a = torch.tensor([[2.0, -2.0], [2.0, 2.0], [2.0, -2.0], [0.1, -2.0]])
    y = torch.tensor([[1.0, 0.0]] * 4)
    mask = torch.tensor([[True, True], [True, True], [True, True], [False, True]])
    assert constraint_satisfied(r, a, y, mask).tolist() == [True, False, False, True]
    # tau_a demands confidence: sigmoid(0.1) is on the right side but not confident
    mask_all = torch.ones(4, 2, dtype=torch.bool)
    assert constraint_satisfied(r, a, y, mask_all, tau_a=0.8).tolist() == [True, False, False,
                                                                            False]


def test_optimizer_stops_per_row_and_respects_the_rule():
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(64, 4, generator=g)
    z0[:5, 0], z0[:5, 1:3] = 3.0, 2.0  # already satisfied: no step taken
    y = torch.ones(64, 2)
    mask = torch.ones(64, 2, dtype=torch.bool)
    mask[10:20, 1] = False  # second attribute free for these rows
    res = optimize_latents_eager(z0, y, mask, realism_fn, attribute_fn, 0.5, steps=200,
                                 lr=0.1, w_dist=0.01)
    assert res.latents.shape == (64, 4) and res.steps.dtype == torch.int64
    assert bool(res.converged.all())
    assert torch.equal(res.steps[:5], torch.zeros(5, dtype=torch.int64))
    assert torch.equal(res.latents[:5], z0[:5])
    ok = constraint_satisfied(realism_fn(res.latents, y), attribute_fn(res.latents), y, mask)
    assert bool(ok.all())
    assert bool((res.steps <= 200).all()) and int(res.steps.max()) > 0
    # unrequested attribute not pushed: rows 10..19 keep z2 unchanged unless needed... the
    # attribute loss has no term for it, only the distance penalty (which holds it at z0)
    assert torch.allclose(res.latents[10:20, 2], z0[10:20, 2], atol=1e-3)
    assert torch.allclose(res.realism_prob, torch.sigmoid(realism_fn(res.latents, y)))


def test_optimizer_rows_are_independent_and_match_the_op():
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn(16, 4, generator=g)
    y = (torch.rand(16, 2, generator=g) > 0.5).float()
    mask = torch.ones(16, 2, dtype=torch.bool)
    full = optimize_latents_eager(z0, y, mask, realism_fn, attribute_fn, 0.5, steps=50, lr=0.05)
    part = optimize_latents_eager(z0[3:6], y[3:6], mask[3:6], realism_fn, attribute_fn, 0.5,
                                  steps=50, lr=0.05)
    assert torch.allclose(full.latents[3:6], part.latents, atol=1e-6)
    assert torch.equal(full.steps[3:6], part.steps)
    op = lcengine.optimize_latents(z0, y, mask, realism_fn, attribute_fn, 0.5, steps=50,
                                   lr=0.05, backend="eager")
    # the op's eager path and the method's loop share optimize_latents_ref
    assert torch.allclose(op.latents, full.latents, atol=1e-4)
    assert torch.equal(op.steps, full.steps) and torch.equal(op.converged, full.converged)


def test_optimizer_step_limit_marks_unconverged():
    z0 = torch.zeros(3, 4)
    y, mask = torch.ones(3, 2), torch.ones(3, 2, dtype=torch.bool)
    res = optimize_latents_eager(z0, y, mask, realism_fn, attribute_fn, 0.5, steps=2, lr=1e-3)
    assert not bool(res.converged.any())
    assert res.steps.tolist() == [2, 2, 2]


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(z_start=torch.full((2, 4), float("nan"))), ValueError, "NaN"),
    (dict(z_start=torch.zeros(4)), ValueError, r"\[B, D\]"),
    (dict(y=torch.ones(2, 3)), ValueError, "mask must have shape"),
    (dict(mask=torch.ones(2, 2)), TypeError, "bool"),
    (dict(y=torch.full((2, 2), 0.5)), ValueError, "only 0 and 1"),
    (dict(tau_a=0.3), ValueError, "tau_a"),
    (dict(steps=-1), ValueError, "steps"),
    (dict(w_dist=-1.0), ValueError, "w_dist"),
])
def test_optimizer_bad_input(kwargs, exc, match):
    args = dict(z_start=torch.zeros(2, 4), y=torch.ones(2, 2),
                mask=torch.ones(2, 2, dtype=torch.bool))
    args.update({k: v for k, v in kwargs.items() if k in args})
    opts = {k: v for k, v in kwargs.items() if k not in args}
    with pytest.raises(exc, match=match):
        optimize_latents_eager(args["z_start"], args["y"], args["mask"], realism_fn,
                               attribute_fn, 0.5, **opts)


def test_complete_requests():
    table = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1]], dtype=np.int8)
    values = np.array([1, 0, 0, 1], dtype=np.int8)  # 4th column: a zero-shot attribute
    mask = np.array([True, False, False, True])
    out = complete_requests(values, mask, table, 50, seed=0)
    assert out.shape == (50, 4) and out.dtype == np.int8
    assert (out[:, 0] == 1).all() and (out[:, 3] == 1).all()
    # unrequested columns come from rows with a0 = 1 only
    assert {tuple(r) for r in out[:, :3]} <= {(1, 0, 1), (1, 1, 0)}
    # no row matches (a0=0, a1=0): nearest rows, requested values still win
    out = complete_requests(np.array([0, 0, 0]), np.array([True, True, False]), table, 5)
    assert (out[:, :2] == 0).all()
    with pytest.raises(ValueError):
        complete_requests(values, mask[:3], table, 5)


# ------------------------------------------------------------------ the pipeline object
@pytest.fixture(scope="module")
def fitted():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    x, att = toy_data(512)
    lc = LatentConstraints(toy_model(), NAMES, training=tiny_training(
        attribute_steps=400, realism_steps=150),
        sampling=SamplingConfig(steps=60, lr=0.1, w_dist=0.001),
        transform=SamplingConfig(steps=60, lr=0.1, w_dist=0.001))
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


def test_transform_changes_only_requested(fitted):
    lc, x, att = fitted
    src = x[att[:, 0] == 0][:10]
    tr = lc.transform(src, "a0")
    assert tr.latents.shape == (10, 4) and tr.images.shape == (10, 5)
    assert tr.source_images.shape == (10, 5)
    assert tr.latent_distance.shape == (10,) and tr.pixel_distance.shape == (10,)
    assert tr.mask[:, 0].all() and not tr.mask[:, 1:].any()
    s = tr.summary()
    assert set(s) == {"converged_fraction", "mean_steps", "mean_latent_distance",
                      "mean_pixel_distance", "num_rows"}
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
    resumed.fit(realism_steps=50, progress=False)
    wa, wb = straight.trainer.state_tensors(), resumed.trainer.state_tensors()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_checkpoint_errors(fitted, tmp_path):
    lc, _, _ = fitted
    d = lc.save(tmp_path / "c")
    # a model of another latent size
    from lcengine.method.models import LatentModel

    other = LatentModel.from_callables(lambda x: (x[:, :3], x[:, :3] * 0), lambda z: torch.cat(
        [z, z[:, :2]], 1), 3, data_shape=(5,))
    with pytest.raises(ValueError, match="latent_dim"):
        LatentConstraints.load(d, other)
    # corrupted tensor file
    w = d / "constraints.safetensors"
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


def test_second_vae_architecture_works():
    """A conv VAE written like a user's own (tests/second_vae.py) plugs in unchanged."""
    from second_vae import make_conv_vae

    from lcengine.method.data import ATTRIBUTE_NAMES, load_mnist
    from lcengine.method.models import LatentModel

    ds = load_mnist()
    model = LatentModel.from_module(make_conv_vae(latent_dim=6))
    lc = LatentConstraints(model, ATTRIBUTE_NAMES, training=tiny_training(
        attribute_steps=10, realism_steps=10), sampling=SamplingConfig(steps=5),
        transform=SamplingConfig(steps=5))
    lc.fit(ds.train_images[:300], ds.train_attributes[:300], progress=False)
    assert lc.sigma_bar.shape == (6,)
    for method in ("actor", "optimize", "baseline"):
        res = lc.sample("7 thick", 3, method=method)
        assert res.images.shape == (3, 28, 28)
    tr = lc.transform(ds.heldout_images[:2], "slant_right")
    assert tr.images.shape == (2, 28, 28) and tr.steps.max() <= 5
