# SPDX-License-Identifier: Apache-2.0
"""Zero-shot constraints: an attribute learned from a black-box rule, with no data labels.

A *rule* is any Python predicate on decoded outputs, ``rule(x [N, *data_shape]) -> [N]`` bool
(non-differentiable, e.g. "more ink in the top half"). :func:`learn_zero_shot_constraint` draws
prior samples ``z ~ N(0, I)`` (:func:`lcengine.standard_normal`), decodes them, labels them with
the rule, and trains a one-logit :class:`~lcengine.method.critics.AttributeCritic` on
``(z, label)`` with :func:`lcengine.constraint_loss` (classes balanced by weight). The critic then
joins the data's attribute critic (see :class:`~lcengine.method.critics.StackedAttributeCritic`),
so the new attribute can be requested in sampling and transforms like any other.

Rules themselves belong to applications (rules are code, not checkpoint data: a loaded
constraint gets its rule back through
:meth:`~lcengine.method.constraints.LatentConstraints.attach_rule`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

import lcengine
from lcengine.validation import check_int

from .critics import AttributeCritic
from .data import DeviceLike, resolve_device
from .streams import derive_seed, step_generator

Rule = Callable[[np.ndarray], np.ndarray]


@dataclass
class ZeroShotConstraint:
    """A learned zero-shot attribute.

    Attributes:
        name: attribute name used in requests (must not clash with existing attributes).
        critic: one-logit attribute critic. ``critic(z) -> [B, 1]``.
        positive_rate: fraction of the labelled prior samples that satisfy the rule.
        heldout_accuracy: the critic's balanced accuracy on held-out labelled prior samples.
        num_samples: prior samples labelled by the rule.
        rule: the predicate, when known (not saved in checkpoints: re-attach it after loading
            to measure the attribute).
        history: ``{"step", "loss"}`` of the critic's training.
    """

    name: str
    critic: AttributeCritic
    positive_rate: float
    heldout_accuracy: float
    num_samples: int
    rule: Optional[Rule] = None
    history: dict = field(default_factory=lambda: {"step": [], "loss": []})

    def info(self) -> dict:
        """JSON-serializable description (everything but the weights and the rule)."""
        return {
            "name": self.name,
            "critic": self.critic.config(),
            "positive_rate": self.positive_rate,
            "heldout_accuracy": self.heldout_accuracy,
            "num_samples": self.num_samples,
            "history": self.history,
        }


def apply_rule(rule: Rule, x: np.ndarray) -> np.ndarray:
    """Calls a rule on a batch and validates its answer: bool. # [N, ...] -> [N]"""
    if not callable(rule):
        raise TypeError(
            f"rule must be callable (outputs [N, ...] -> bool [N]), got {type(rule).__name__}"
        )
    out = rule(x)
    out = np.asarray(out.detach().cpu() if isinstance(out, torch.Tensor) else out)
    if out.shape != (x.shape[0],):
        raise ValueError(
            f"rule returned shape {list(out.shape)}; it must return one bool per "
            f"item, shape [{x.shape[0]}]"
        )
    if out.dtype != np.bool_:
        if (
            not (np.issubdtype(out.dtype, np.integer) or np.issubdtype(out.dtype, np.floating))
            or not np.isin(out, (0, 1)).all()
        ):
            raise ValueError("rule must return booleans (or 0/1) per item")
        out = out.astype(bool)
    return out


@torch.no_grad()
def label_prior_samples(
    model,
    rule: Rule,
    num_samples: int,
    *,
    seed: int = 0,
    batch_size: int = 1000,
    progress: bool = True,
) -> tuple[torch.Tensor, np.ndarray]:
    """Prior samples and the rule's verdict on their decoded outputs.

    Args:
        model: a :class:`~lcengine.method.latent_model.LatentModel`.
        rule: predicate on decoded outputs.
        num_samples: how many prior samples.
        seed: Philox key of the samples.

    Returns:
        ``(z, labels)``. # [N, D] float32, [N] bool
    """
    check_int("num_samples", num_samples, minimum=10)
    z = lcengine.standard_normal(
        (num_samples, model.latent_dim), seed=derive_seed(seed, "zeroshot/prior")
    )  # [N, D]
    labels = []
    for i in tqdm(
        range(0, num_samples, batch_size),
        desc="label prior samples",
        unit="batch",
        disable=None if progress else True,
        leave=False,
    ):
        x = model.decode(z[i : i + batch_size]).detach().cpu().numpy().astype(np.float32)
        labels.append(apply_rule(rule, x))
    return z, np.concatenate(labels)


def train_zero_shot_critic(
    z: torch.Tensor,
    labels: np.ndarray,
    *,
    hidden: Sequence[int] = (128, 128),
    activation: str = "relu",
    steps: int = 1500,
    batch_size: int = 256,
    lr: float = 1e-3,
    heldout_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = True,
    device: DeviceLike = "cpu",
) -> tuple[AttributeCritic, float, dict]:
    """Trains a one-logit critic on rule-labelled latents.

    Positives and negatives are weighted to contribute equally, so a rare rule is not learned
    as "always false". The critic is initialized on the CPU and trained on ``device`` (index
    draws stay on CPU generators, so every device sees the same batches).

    Returns:
        ``(critic, balanced held-out accuracy, history)``.
    """
    labels = np.asarray(labels, dtype=bool)
    n = int(z.shape[0])
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape [{n}], got {list(labels.shape)}")
    rate = float(labels.mean())
    if labels.sum() < 2 or (~labels).sum() < 2:
        raise ValueError(
            f"the rule is (almost) constant on the prior samples (positive rate "
            f"{rate:.4f}); a constraint needs both outcomes to learn from"
        )
    perm = np.random.default_rng(derive_seed(seed, "zeroshot/split")).permutation(n)
    n_held = max(2, int(round(heldout_fraction * n)))
    held, train = perm[:n_held], perm[n_held:]
    dev = resolve_device(device)
    z = z.to(dev)  # [N, D]
    y = torch.from_numpy(labels.astype(np.float32)).to(dev)  # [N]
    pos_w = 0.5 / max(rate, 1e-6)
    neg_w = 0.5 / max(1.0 - rate, 1e-6)
    w = torch.where(y > 0.5, torch.tensor(pos_w, device=dev), torch.tensor(neg_w, device=dev))
    train_t = torch.from_numpy(train)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "zeroshot/init"))
        critic = AttributeCritic(int(z.shape[1]), 1, tuple(hidden), activation)
    critic.to(dev)
    opt = torch.optim.Adam(critic.parameters(), lr=lr)
    history: dict = {"step": [], "loss": []}
    for step in tqdm(
        range(steps),
        desc="zero-shot critic",
        unit="step",
        disable=None if progress else True,
        leave=False,
    ):
        gen = step_generator(seed, "zeroshot/index", step)
        idx = train_t[torch.randint(train_t.numel(), (batch_size,), generator=gen)].to(dev)
        logits = critic(z[idx])  # [B, 1]
        loss = lcengine.constraint_loss(logits, y[idx, None], weight=w[idx, None])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == steps - 1:
            history["step"].append(step + 1)
            history["loss"].append(float(loss.item()))
    critic.eval()
    with torch.no_grad():
        pred = (critic(z[torch.from_numpy(held).to(dev)])[:, 0] > 0).cpu().numpy()  # [H]
    truth = labels[held]
    tpr = float((pred & truth).sum() / max(truth.sum(), 1))
    tnr = float((~pred & ~truth).sum() / max((~truth).sum(), 1))
    return critic, 0.5 * (tpr + tnr), history


def learn_zero_shot_constraint(
    model,
    rule: Rule,
    name: str,
    *,
    num_samples: int = 20000,
    hidden: Sequence[int] = (128, 128),
    steps: int = 1500,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
    device: DeviceLike = "cpu",
) -> ZeroShotConstraint:
    """Learns a zero-shot constraint from a rule on decoded prior samples (no data labels).

    Args:
        model: a :class:`~lcengine.method.latent_model.LatentModel`.
        rule: ``rule(x [N, *data_shape] float32) -> bool [N]``; black box, not differentiated.
        name: the attribute name requests will use.
        num_samples: prior samples to label.
        hidden, steps, batch_size, lr: the critic and its training.
        seed: seed of the samples, the split and the training.
        progress: show tqdm bars (rate and ETA).
        device: where the critic is trained and kept (the prior samples are decoded by the
            model on its own device).

    Returns:
        The :class:`ZeroShotConstraint`.
    """
    if (
        not isinstance(name, str)
        or not name.strip()
        or any(c in name for c in ",;! \t=")
        or name.isnumeric()
    ):
        raise ValueError(
            f"name must be a non-empty identifier-like string without spaces, "
            f"commas, '!' or '=', got {name!r}"
        )
    z, labels = label_prior_samples(model, rule, num_samples, seed=seed, progress=progress)
    critic, acc, history = train_zero_shot_critic(
        z,
        labels,
        hidden=hidden,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        progress=progress,
        device=device,
    )
    return ZeroShotConstraint(
        name=name,
        critic=critic,
        positive_rate=float(labels.mean()),
        heldout_accuracy=acc,
        num_samples=num_samples,
        rule=rule,
        history=history,
    )


__all__ = [
    "Rule",
    "ZeroShotConstraint",
    "apply_rule",
    "label_prior_samples",
    "learn_zero_shot_constraint",
    "train_zero_shot_critic",
]
