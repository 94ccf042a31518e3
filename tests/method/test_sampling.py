# SPDX-License-Identifier: Apache-2.0
"""The latent optimizer: stopping rule, per-row stopping, agreement with the op, bad input."""

import warnings

import pytest
import torch

import lcengine
from lcengine.method.sampling import constraint_satisfied, optimize_latents_eager

warnings.filterwarnings("ignore", message=".*falling back to the eager.*")
warnings.filterwarnings("ignore", message=".*no fused.*")


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
    assert constraint_satisfied(r, a, y, mask_all, tau_a=0.8).tolist() == [
        True,
        False,
        False,
        False,
    ]


def test_optimizer_stops_per_row_and_respects_the_rule():
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(64, 4, generator=g)
    z0[:5, 0], z0[:5, 1:3] = 3.0, 2.0  # already satisfied: no step taken
    y = torch.ones(64, 2)
    mask = torch.ones(64, 2, dtype=torch.bool)
    mask[10:20, 1] = False  # second attribute free for these rows
    res = optimize_latents_eager(
        z0, y, mask, realism_fn, attribute_fn, 0.5, steps=200, lr=0.1, w_dist=0.01
    )
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
    part = optimize_latents_eager(
        z0[3:6], y[3:6], mask[3:6], realism_fn, attribute_fn, 0.5, steps=50, lr=0.05
    )
    assert torch.allclose(full.latents[3:6], part.latents, atol=1e-6)
    assert torch.equal(full.steps[3:6], part.steps)
    op = lcengine.optimize_latents(
        z0, y, mask, realism_fn, attribute_fn, 0.5, steps=50, lr=0.05, backend="eager"
    )
    # the op's eager path and the method's loop share optimize_latents_ref
    assert torch.allclose(op.latents, full.latents, atol=1e-4)
    assert torch.equal(op.steps, full.steps) and torch.equal(op.converged, full.converged)


def test_optimizer_step_limit_marks_unconverged():
    z0 = torch.zeros(3, 4)
    y, mask = torch.ones(3, 2), torch.ones(3, 2, dtype=torch.bool)
    res = optimize_latents_eager(z0, y, mask, realism_fn, attribute_fn, 0.5, steps=2, lr=1e-3)
    assert not bool(res.converged.any())
    assert res.steps.tolist() == [2, 2, 2]


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(z_start=torch.full((2, 4), float("nan"))), ValueError, "NaN"),
        (dict(z_start=torch.zeros(4)), ValueError, r"\[B, D\]"),
        (dict(y=torch.ones(2, 3)), ValueError, "mask must have shape"),
        (dict(mask=torch.ones(2, 2)), TypeError, "bool"),
        (dict(y=torch.full((2, 2), 0.5)), ValueError, "only 0 and 1"),
        (dict(tau_a=0.3), ValueError, "tau_a"),
        (dict(steps=-1), ValueError, "steps"),
        (dict(w_dist=-1.0), ValueError, "w_dist"),
    ],
)
def test_optimizer_bad_input(kwargs, exc, match):
    args = dict(
        z_start=torch.zeros(2, 4), y=torch.ones(2, 2), mask=torch.ones(2, 2, dtype=torch.bool)
    )
    args.update({k: v for k, v in kwargs.items() if k in args})
    opts = {k: v for k, v in kwargs.items() if k not in args}
    with pytest.raises(exc, match=match):
        optimize_latents_eager(
            args["z_start"], args["y"], args["mask"], realism_fn, attribute_fn, 0.5, **opts
        )
