# SPDX-License-Identifier: Apache-2.0
"""The inference sampler on a toy run folder: the same images as LatentConstraints for a seed,
deterministic, thread-safe, clear errors, and no training code imported."""

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from lcengine.method.run import CONSTRAINTS_DIR, load_run
from lcengine.method.sampler import ConditionalSampler
from support.method_toys import fit_toy_run, rule_positive_product, toy_model

TESTS = Path(__file__).resolve().parents[1]
TRAINING_MODULES = (
    "lcengine.method.training",
    "lcengine.method.steps",
    "lcengine.method.zeroshot",
    "lcengine.method.constraints",
)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return fit_toy_run(tmp_path_factory.mktemp("sampler") / "run")


@pytest.fixture(scope="module")
def sampler(toy_run):
    return ConditionalSampler.from_run(toy_run)


@pytest.mark.parametrize("mode", ["actor", "optimize"])
def test_the_same_images_as_latent_constraints_for_a_seed(toy_run, sampler, mode):
    lc = load_run(toy_run).constraints
    for request, seed in (("a0 !a1", 3), ({"a2": 1}, 11)):
        ref = lc.sample(request, 9, method=mode, seed=seed)
        out = sampler.sample(request, 9, seed=seed, mode=mode)
        np.testing.assert_array_equal(out.images.numpy(), ref.images)
        np.testing.assert_array_equal(out.targets.numpy().astype(np.int8), ref.attributes)
        np.testing.assert_array_equal(out.accepted.numpy(), ref.converged)
        assert out.mode == mode and out.images.shape == (9, 5)


def test_call_is_the_module_and_deterministic(sampler):
    targets, mask, latents = sampler.inputs("a0 a1", 6, seed=5)
    assert mask[:, :2].all() and not mask[:, 2].any()
    images = sampler(targets, latents)
    with torch.no_grad():
        assert torch.equal(images, sampler.module()(targets, latents))
    sampled = sampler.sample("a0 a1", 6, seed=5)
    assert torch.equal(images, sampled.images)
    generated = sampler.generate(targets, latents, mask=mask)
    assert torch.equal(generated.images, images) and torch.equal(generated.latents, sampled.latents)
    assert torch.equal(generated.accepted, sampled.accepted)
    opt = sampler.generate(targets, latents, mask=mask, mode="optimize")
    assert torch.equal(opt.accepted, sampler.sample("a0 a1", 6, seed=5, mode="optimize").accepted)
    first, again = (sampler.sample("a0", 4, seed=1).images for _ in range(2))
    assert torch.equal(first, again)
    assert not torch.equal(first, sampler.sample("a0", 4, seed=2).images)


def test_many_threads_get_their_own_results(sampler):
    seeds = list(range(12))
    expected = {s: sampler.sample("a0 !a2", 5, seed=s, mode="optimize").images for s in seeds}
    got, errors = {}, []
    barrier = threading.Barrier(len(seeds))

    def work(s):
        try:
            barrier.wait()
            for _ in range(3):
                got[s] = sampler.sample("a0 !a2", 5, seed=s, mode="optimize").images
        except Exception as exc:  # collected: a thread's exception would otherwise be lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and all(not t.is_alive() for t in threads)
    for s in seeds:
        assert torch.equal(got[s], expected[s]), s


def test_bad_inputs_are_refused_naming_the_argument(sampler):
    t, _, z = sampler.inputs("a0", 4, seed=0)
    with pytest.raises(ValueError, match="targets must have shape"):
        sampler(t[:, :2], z)
    with pytest.raises(ValueError, match="latents must have shape"):
        sampler(t, z[:, :3])
    with pytest.raises(ValueError, match="rows"):
        sampler(t, z[:3])
    with pytest.raises(ValueError, match="0/1"):
        sampler(t * 0.5, z)
    with pytest.raises(ValueError, match="finite"):
        sampler(t, z.clone().fill_(float("nan")))
    with pytest.raises(TypeError, match="latents must be a torch.Tensor"):
        sampler(t, z.numpy())
    with pytest.raises(ValueError, match="mode must be one of"):
        sampler(t, z, mode="fast")
    with pytest.raises(ValueError, match="zz"):
        sampler.sample("a0 zz", 4)
    with pytest.raises(ValueError, match="n must be"):
        sampler.sample("a0", 0)
    with pytest.raises(ValueError, match="does not exist"):
        ConditionalSampler.from_run(Path("/nonexistent/run"))


def test_zero_shot_critics_are_loaded_and_refused_to_the_actor(toy_run, tmp_path):
    lc = load_run(toy_run).constraints
    lc.add_zero_shot_constraint(
        "prod", rule_positive_product, num_samples=512, hidden=(16,), steps=30, progress=False
    )
    lc.save(tmp_path / "c")
    s = ConditionalSampler.from_checkpoint(tmp_path / "c", toy_model())
    assert s.attribute_names == ("a0", "a1", "a2", "prod")
    ref = lc.sample("a0 prod", 7, method="optimize", seed=4)
    out = s.sample("a0 prod", 7, seed=4, mode="optimize")
    np.testing.assert_array_equal(out.images.numpy(), ref.images)
    with pytest.raises(ValueError, match="zero-shot"):
        s.sample("a0 prod", 7, seed=4, mode="actor")
    with pytest.raises(ValueError, match="nn.Module"):  # toy_model wraps plain functions
        s.module()


def test_a_mismatched_model_is_refused(toy_run):
    from lcengine.method.latent_model import LatentModel

    other = LatentModel.from_callables(lambda x: x, lambda z: z, 3, data_shape=(3,))
    with pytest.raises(ValueError, match="latent_dim"):
        ConditionalSampler.from_checkpoint(toy_run / CONSTRAINTS_DIR, other)


def test_the_sampler_imports_no_training_code(toy_run):
    code = (
        "import sys\n"
        "from lcengine.method.sampler import ConditionalSampler\n"
        f"s = ConditionalSampler.from_run({str(toy_run)!r})\n"
        "s.sample('a0', 3, mode='optimize')\n"
        f"print(sorted(m for m in {TRAINING_MODULES!r} if m in sys.modules))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(TESTS), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


def test_sampling_overrides_match_the_method(toy_run, sampler):
    lc = load_run(toy_run).constraints
    for overrides in ({"steps": 0}, {"steps": 3, "start": "latents"}):
        ref = lc.sample("a1", 5, method="optimize", seed=2, **overrides)
        out = sampler.with_sampling(**overrides).sample("a1", 5, seed=2, mode="optimize")
        np.testing.assert_array_equal(out.images.numpy(), ref.images)
        np.testing.assert_array_equal(out.steps.numpy(), ref.steps)
    assert sampler.sampling.steps == lc.sampling.steps  # the copies left the sampler alone
