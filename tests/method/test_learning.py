# SPDX-License-Identifier: Apache-2.0
"""The training's losses on cases with known answers, the realism batch's composition, and
critics and an actor that learn a toy problem.

The realism critic used for known answers is made linear: hidden layer ``[relu(w.z),
relu(-w.z)]`` and output weights ``[1, -1]`` give ``D(z, y) = w.z + v.y`` (the embedding maps
``y`` through ``v``), so ``grad_z D = w`` on every row and the gradient penalty is
``(|w| - 1)^2`` exactly.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lcengine
from lcengine.method import training as training_module
from lcengine.method.critics import RealismCritic
from lcengine.method.data import LatentSamples
from lcengine.method.steps import realism_step_grads
from lcengine.method.streams import derive_seed
from lcengine.method.training import ConstraintTrainer
from lcengine.reference.training import realism_loss_ref
from support.method_toys import tiny_training

D, A, B = 4, 3, 16
W = torch.tensor([3.0, 4.0, 0.0, 0.0], dtype=torch.float64)  # |w| = 5
V = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)


def linear_critic() -> RealismCritic:
    """``D(z, y) = W.z + V.y`` as a ReLU network (see the module docstring)."""
    critic = RealismCritic(D, A, hidden=(2,), embed_dim=1).double()
    with torch.no_grad():
        critic.y_embedding.weight.copy_(V[None, :])  # [1, A]
        critic.y_embedding.bias.zero_()
        first, last = critic.layers[0], critic.layers[1]
        w_in = torch.cat([W, torch.ones(1, dtype=torch.float64)])  # [D + 1]: z then the embedding
        first.weight.copy_(torch.stack([w_in, -w_in]))  # [2, D + 1]
        first.bias.zero_()
        last.weight.copy_(torch.tensor([[1.0, -1.0]], dtype=torch.float64))
        last.bias.zero_()
    return critic


def realism_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z_real, z_fake, z_mis = (torch.randn(B, D, generator=g, dtype=torch.float64) for _ in range(3))
    y_real = (torch.rand(B, A, generator=g) > 0.5).double()
    y_mis = (torch.rand(B, A, generator=g) > 0.5).double()
    differs = torch.zeros(B, dtype=torch.float64)
    differs[: B // 2] = 1.0
    alpha = torch.rand(B, 1, generator=g, dtype=torch.float64)
    return z_real, z_fake, z_mis, y_real, y_mis, differs, alpha


def expected_realism_loss(batch):
    """BCE of the three blocks (targets 1, 0, 0; the mismatch block weighted by ``differs``),
    mean over 3B rows, and the penalty (|w| - 1)^2, from the linear critic's closed form."""
    z_real, z_fake, z_mis, y_real, y_mis, differs, _ = batch
    logit = lambda z, y: z @ W + y @ V  # noqa: E731
    bce = (
        F.softplus(-logit(z_real, y_real)).sum()  # real rows: -log sigmoid
        + F.softplus(logit(z_fake, y_real)).sum()  # fakes: -log(1 - sigmoid)
        + (differs * F.softplus(logit(z_mis, y_mis))).sum()  # mismatches that differ
    ) / (3 * B)
    return bce, (W.norm() - 1.0) ** 2


def test_linear_critic_is_linear():
    critic = linear_critic()
    z = torch.randn(5, D, dtype=torch.float64)
    y = (torch.rand(5, A) > 0.5).double()
    torch.testing.assert_close(critic(z, y), z @ W + y @ V)


@pytest.mark.parametrize("path", ["autograd", "hand"])
def test_realism_loss_and_gradient_penalty_have_their_known_values(path):
    critic, batch = linear_critic(), realism_batch()
    bce, gp = expected_realism_loss(batch)
    assert float(gp) == pytest.approx(16.0)
    if path == "autograd":
        _, parts = realism_loss_ref(critic, *batch, gp_weight=10.0)
    else:
        parts = realism_step_grads(critic, *batch, gp_weight=10.0).parts
    torch.testing.assert_close(parts["bce"], bce)
    torch.testing.assert_close(parts["gp"], gp)


def test_the_penalty_is_zero_for_a_unit_gradient_and_pulls_the_norm_to_one():
    critic = linear_critic()
    with torch.no_grad():  # |w| = 1: no penalty
        for layer in critic.layers[:1]:
            layer.weight[:, :D] /= 5.0
    out = realism_step_grads(critic, *realism_batch(), gp_weight=10.0)
    assert float(out.parts["gp"]) == pytest.approx(0.0, abs=1e-12)
    critic = linear_critic()  # |w| = 5: the penalty's gradient shrinks w (descent direction)
    batch = realism_batch()
    no_gp = realism_step_grads(critic, *batch, gp_weight=0.0).grads
    with_gp = realism_step_grads(critic, *batch, gp_weight=10.0).grads
    first_weight = 2 if critic.y_embedding is not None else 0  # grads: emb W, emb b, W0, ...
    d_gp = with_gp[first_weight] - no_gp[first_weight]  # [2, D + 1]
    w_rows = critic.layers[0].weight.detach()  # [2, D + 1]: rows +w and -w
    assert float((d_gp[:, :D] * w_rows[:, :D]).sum()) > 0  # gradient along +w: descent shrinks it


def _source(n: int = 512, seed: int = 0) -> LatentSamples:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, D)).astype(np.float32)
    return LatentSamples(z, (z[:, :A] > 0).astype(np.int8))


def test_the_realism_batch_is_composed_as_documented(monkeypatch):
    """Real rows with their own attributes, fakes (prior samples or actor outputs) with the real
    rows' attributes, real rows with other rows' attributes weighted by whether they differ."""
    data = _source()
    cfg = tiny_training(batch_size=B, prior_fake_prob=0.5, seed=4)
    trainer = ConstraintTrainer(D, A, torch.ones(D), cfg)
    seen = {}

    def spy(critic, z_real, z_fake, z_mis, y_real, y_mis, differs, alpha, **kw):
        seen.update(z_real=z_real, z_fake=z_fake, z_mis=z_mis, y_real=y_real, y_mis=y_mis)
        seen.update(differs=differs, alpha=alpha)
        return realism_step_grads(
            critic, z_real, z_fake, z_mis, y_real, y_mis, differs, alpha, **kw
        )

    monkeypatch.setattr(training_module, "realism_step_grads", spy)
    trainer.train_realism_actor(data, 1, progress=False)
    z_all, y_all = data.z, torch.as_tensor(data.attributes).float()  # [N, D], [N, A]

    def rows_of(z):  # the data row of each latent (the source's rows are used as drawn)
        idx = torch.cdist(z.double(), z_all.double()).argmin(1)
        torch.testing.assert_close(z_all[idx], z)
        return idx

    real = rows_of(seen["z_real"])
    torch.testing.assert_close(seen["y_real"], y_all[real])  # real rows, own attributes
    mis = rows_of(seen["z_mis"])
    own = y_all[mis]
    torch.testing.assert_close(seen["differs"], (seen["y_mis"] != own).any(1).float())
    assert 0 < seen["differs"].sum() < B  # some borrowed vectors differ, some happen not to
    # every borrowed vector is some row's attributes
    assert all(((y_all == row).all(1)).any() for row in seen["y_mis"])
    # fakes: each row the step's prior sample or the actor's output for it and the real row's
    # attributes (the actor has not been updated yet: its first update follows actor_every)
    z_prior = lcengine.standard_normal(
        (B, D), seed=derive_seed(cfg.seed, "realism/prior", 0)
    )  # [B, D]
    assert trainer.actor_step == 0
    with torch.no_grad():
        z_actor = trainer.actor(z_prior, seen["y_real"])  # [B, D]
    is_prior = torch.isclose(seen["z_fake"], z_prior).all(1)
    is_actor = torch.isclose(seen["z_fake"], z_actor).all(1)
    assert (is_prior ^ is_actor).all()
    assert 0 < int(is_prior.sum()) < B  # prior_fake_prob 0.5
    assert ((seen["alpha"] >= 0) & (seen["alpha"] <= 1)).all()


def test_actor_loss_has_the_documented_terms():
    data = _source()
    cfg = tiny_training(batch_size=B, seed=1, lambda_dist=0.3, actor_attribute_weight=0.7)
    trainer = ConstraintTrainer(D, A, torch.full((D,), 0.5), cfg)
    trainer.train_attribute(data, 5, progress=False)
    z = torch.randn(B, D)
    y = (torch.rand(B, A) > 0.5).float()
    loss, parts = trainer.actor_loss(z, y)
    with torch.no_grad():
        z_out = trainer.actor(z, y)
        realism = F.softplus(-trainer.realism(z_out, y)).mean()
        attribute = F.binary_cross_entropy_with_logits(trainer.attribute(z_out), y)
        distance = (torch.log1p((z_out - z) ** 2) / 0.25).mean()
    torch.testing.assert_close(parts["realism"].detach(), realism)
    torch.testing.assert_close(parts["attribute"].detach(), attribute)
    torch.testing.assert_close(parts["distance"].detach(), distance)
    torch.testing.assert_close(loss.detach(), realism + 0.7 * attribute + 0.3 * distance)


def _actor_hit_rate(trainer, n: int = 512) -> float:
    """Fraction of actor outputs whose three sign attributes all equal the request."""
    g = torch.Generator().manual_seed(123)
    z = torch.randn(n, D, generator=g)
    y = (torch.rand(n, A, generator=g) > 0.5).float()
    with torch.no_grad():
        out = trainer.actor(z, y)
    return float(((out[:, :A] > 0).float() == y).all(1).float().mean())


@pytest.mark.parametrize(
    "attribute_weight, realism_steps, hit_rate",
    [(1.0, 600, 0.9), (0.0, 3000, 0.5)],  # the paper's objective (0) learns slower
)
def test_critics_and_actor_learn_the_toy_problem(attribute_weight, realism_steps, hit_rate):
    """Attributes are the signs of z0..z2: the attribute critic learns them, the realism critic
    tells real rows from rows with the wrong attributes, and the actor moves prior samples to
    the requested signs (all three right: 1/8 by chance), with the attribute critic in its loss
    and with the realism critic alone."""
    data = _source(2048)
    cfg = tiny_training(
        batch_size=64,
        attribute_steps=300,
        realism_steps=realism_steps,
        actor_every=2,
        attribute_lr=3e-3,
        actor_lr=3e-3,
        lambda_dist=0.001,
        actor_attribute_weight=attribute_weight,
        seed=2,
    )
    trainer = ConstraintTrainer(D, A, torch.full((D,), 0.5), cfg)
    before = _actor_hit_rate(trainer)
    trainer.train_attribute(data, cfg.attribute_steps, progress=False)
    trainer.train_realism_actor(data, cfg.realism_steps, progress=False)
    z = torch.randn(1000, D, generator=torch.Generator().manual_seed(9))
    y = (z[:, :A] > 0).float()
    with torch.no_grad():
        attr_acc = float(((trainer.attribute(z) > 0).float() == y).float().mean())
        real = trainer.realism(z, y)
        wrong = trainer.realism(z, 1.0 - y)  # every attribute flipped
    assert attr_acc > 0.95
    assert float((real > wrong).float().mean()) > 0.65  # 0.5 by chance
    after = _actor_hit_rate(trainer)
    assert before < 0.3 and after > hit_rate, (before, after)
