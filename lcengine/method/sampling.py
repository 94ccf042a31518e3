# SPDX-License-Identifier: Apache-2.0
"""Generating under constraints: the actor in one pass, or gradient-based latent optimization.

:func:`optimize_latents_eager` is the eager autograd loop that the fused op
``lcengine.optimize_latents`` reproduces: the one loop,
:func:`lcengine.reference.optimize_latents_ref`, with the method's input checks and a progress
bar. Per row it minimizes

    w_realism * constraint_loss(D(z, y), 1)
  + w_attr    * sum_a mask_a * constraint_loss(D_attr(z)_a, y_a)
  + w_dist    * distance_penalty(z, z_start, sigma_bar)

with Adam (the formula of :func:`lcengine.latent_adam_`), and freezes a row (``active`` =
False) at the first point where it is *satisfied*: ``sigmoid(D(z, y)) > tau_r`` and every
requested attribute is on its requested side with confidence ``tau_a`` (``sigmoid(D_attr) >
tau_a`` for a 1, ``< 1 - tau_a`` for a 0; ``tau_a = 0.5`` is "on the right side of 0.5").

:func:`complete_requests` turns a partial request ("a thick 7") into full attribute vectors for
the conditional realism critic by borrowing the unrequested attributes from data rows that match
the request, i.e. it samples ``y ~ p(y | requested attributes)`` from the training table.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from lcengine import OptimizeResult  # the op's result type: one definition
from lcengine.reference import constraint_satisfied_ref, optimize_latents_ref

RealismFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
AttributeFn = Callable[[torch.Tensor], torch.Tensor]


def constraint_satisfied(realism_logits: torch.Tensor, attribute_logits: torch.Tensor,
                         y: torch.Tensor, mask: torch.Tensor, *, tau_r: float = 0.5,
                         tau_a: float = 0.5) -> torch.Tensor:
    """The per-row stopping rule of the latent optimizer (defined once, in
    :func:`lcengine.reference.constraint_satisfied_ref`): ``sigmoid(D) > tau_r`` and every
    masked attribute on its requested side with confidence ``tau_a``. # [B] bool
    """
    return constraint_satisfied_ref(realism_logits, attribute_logits, y, mask, tau_r=tau_r,
                                    tau_a=tau_a)


def _check_probability(name: str, v: float, *, open_low: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {v!r}")
    return float(v)


def _check_nonneg(name: str, v: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite float >= 0, got {v!r}")
    return float(v)


def check_targets(y: torch.Tensor, mask: torch.Tensor, rows: int, num_attributes: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Validates attribute targets and their mask; returns float32 ``y`` and bool ``mask``."""
    for name, t in (("y", y), ("mask", mask)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape [{rows}, {num_attributes}], "
                            f"got {type(t).__name__}")
        if tuple(t.shape) != (rows, num_attributes):
            raise ValueError(f"{name} must have shape [{rows}, {num_attributes}] (one row per "
                             f"latent, one column per attribute), got {list(t.shape)}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    y = y.to(torch.float32)
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("y must hold only 0 and 1")
    return y, mask


def optimize_latents_eager(z_start: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                           realism_critic: RealismFn, attribute_critic: AttributeFn,
                           sigma_bar: Union[float, torch.Tensor], *, w_realism: float = 1.0,
                           w_attr: float = 1.0, w_dist: float = 0.1, tau_r: float = 0.5,
                           tau_a: float = 0.5, steps: int = 300, lr: float = 0.05,
                           betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                           realism_attributes: Optional[int] = None,
                           progress: bool = False, desc: str = "optimize latents"
                           ) -> OptimizeResult:
    """Gradient-based latent optimization against both critics, stopping per row.

    Each iteration evaluates the critics at the current latents of the rows still active;
    rows that satisfy :func:`constraint_satisfied` are frozen there, the others take one
    Adam step (:func:`lcengine.latent_adam_`'s formula) on the per-row loss (see the module
    docstring). Rows are independent: a row's trajectory does not depend on the other rows of
    the batch. After the last step the remaining rows are checked once more.

    Args:
        z_start: starting latents (prior samples, or encodings for a transform); also the
            anchor of the distance penalty. # [B, D]
        y: requested attribute values, 0/1. # [B, A]
        mask: which attributes are requested (only those enter the attribute loss). # [B, A] bool
        realism_critic: ``D(z, y[:, :realism_attributes]) -> logits [B]``.
        attribute_critic: ``D_attr(z) -> logits [B, A]``.
        sigma_bar: scalar or per-dimension scale of the distance penalty. # [] or [D]
        w_realism, w_attr, w_dist: loss weights (>= 0).
        tau_r: realism probability a row must exceed to stop.
        tau_a: confidence each requested attribute needs (0.5 = right side of 0.5).
        steps: maximum Adam updates per row.
        lr, betas, eps: Adam hyperparameters of :func:`lcengine.latent_adam_`.
        realism_attributes: how many leading columns of ``y`` the realism critic reads
            (default: its ``num_attributes`` attribute, else all). Extra columns are constraints
            only the attribute critic knows (zero-shot).
        progress: show a tqdm bar.
        desc: its label.

    Returns:
        :class:`OptimizeResult`.
    """
    if not isinstance(z_start, torch.Tensor) or z_start.dim() != 2:
        raise ValueError(f"z_start must be a tensor of shape [B, D], got "
                         f"{getattr(z_start, 'shape', type(z_start).__name__)}")
    if not z_start.is_floating_point():
        raise TypeError(f"z_start must be a floating tensor, got {z_start.dtype}")
    if not torch.isfinite(z_start).all():
        raise ValueError("z_start contains NaN or infinite values")
    b = z_start.shape[0]
    num_attr = y.shape[1] if isinstance(y, torch.Tensor) and y.dim() == 2 else -1
    y, mask = check_targets(y, mask, b, num_attr)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    w_realism, w_attr, w_dist = (_check_nonneg(n, v) for n, v in
                                 (("w_realism", w_realism), ("w_attr", w_attr),
                                  ("w_dist", w_dist)))
    tau_r = _check_probability("tau_r", tau_r)
    tau_a = _check_probability("tau_a", tau_a)
    if tau_a < 0.5:
        raise ValueError(f"tau_a must be in [0.5, 1), got {tau_a}")
    if realism_attributes is None:
        realism_attributes = int(getattr(realism_critic, "num_attributes", num_attr))
    if not 0 <= realism_attributes <= num_attr:
        raise ValueError(f"realism_attributes must be in [0, {num_attr}], got "
                         f"{realism_attributes}")

    bar = tqdm(total=steps, desc=desc, disable=None if progress else True, leave=False)

    def on_step(t: int, converged: torch.Tensor) -> None:
        bar.update(1)
        bar.set_postfix(converged=f"{int(converged.sum())}/{b}")

    try:
        z, converged, steps_taken, realism_prob, attribute_prob = optimize_latents_ref(
            z_start.detach().to(torch.float32), y, mask, realism_critic, attribute_critic,
            sigma_bar, w_realism=w_realism, w_attr=w_attr, w_dist=w_dist, tau_r=tau_r,
            tau_a=tau_a, steps=steps, lr=lr, betas=betas, eps=eps,
            realism_attributes=realism_attributes, on_step=on_step)
    finally:
        bar.close()
    return OptimizeResult(latents=z, converged=converged, steps=steps_taken,
                          realism_prob=realism_prob, attribute_prob=attribute_prob)


@torch.no_grad()
def actor_latents(actor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  z: torch.Tensor, y: torch.Tensor, *, batch_size: int = 4096) -> torch.Tensor:
    """``G(z, y)`` in batches without gradients; reads the leading ``actor.num_attributes``
    columns of ``y`` (later columns are zero-shot constraints the actor was not trained on).

    Args:
        z: starting latents. # [B, D]
        y: requested attributes. # [B, A]

    Returns:
        Transformed latents. # [B, D]
    """
    if not torch.isfinite(z).all():
        raise ValueError("z contains NaN or infinite values")
    a = int(getattr(actor, "num_attributes", y.shape[1]))
    y = y[:, :a].to(torch.float32)
    return torch.cat([actor(z[i:i + batch_size], y[i:i + batch_size])
                      for i in range(0, z.shape[0], batch_size)]) if z.shape[0] else z.clone()


def complete_requests(values: np.ndarray, mask: np.ndarray, table: np.ndarray, n: int, *,
                      seed: int = 0) -> np.ndarray:
    """Full attribute vectors for a (partial) request: ``y ~ p(y | requested)`` from data.

    The conditional realism critic needs every attribute. Unrequested ones are borrowed from
    training rows that agree with the request on every requested attribute (drawn uniformly
    with replacement); if no row agrees, from the rows that agree on the most requested
    attributes. Requested values always win. Columns beyond ``table``'s (zero-shot
    constraints) take the requested value, or 0 when unrequested.

    Args:
        values: requested values. # [A_all] or [n, A_all]
        mask: requested attributes. # [A_all] or [n, A_all] bool
        table: training attributes, 0/1. # [N, A]
        n: rows to produce (must equal the rows of ``values`` when it is 2-D).
        seed: seed of the row draws.

    Returns:
        int8 attribute vectors. # [n, A_all]
    """
    values = np.asarray(values)
    mask = np.asarray(mask, dtype=bool)
    table = np.asarray(table)
    if values.shape != mask.shape:
        raise ValueError(f"values and mask must have the same shape, got {values.shape} and "
                         f"{mask.shape}")
    if table.ndim != 2 or table.shape[0] < 1:
        raise ValueError(f"table must be a non-empty [N, A] attribute table, got {table.shape}")
    if values.ndim == 1:
        values = np.broadcast_to(values, (n, values.shape[0]))
        mask = np.broadcast_to(mask, (n, mask.shape[0]))
    if values.ndim != 2 or values.shape[0] != n:
        raise ValueError(f"values must have shape [A] or [{n}, A], got {values.shape}")
    a_all, a = values.shape[1], table.shape[1]
    if a_all < a:
        raise ValueError(f"values has {a_all} attributes, fewer than the table's {a}")
    rng = np.random.default_rng(seed)
    out = np.zeros((n, a_all), dtype=np.int8)
    # Rows sharing one request are completed together (the common case: one request, n rows).
    keys = np.concatenate([values[:, :a] * mask[:, :a], mask[:, :a]], axis=1).astype(np.int8)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    for k in range(uniq.shape[0]):
        rows = np.flatnonzero(inverse == k)
        v, m = uniq[k, :a], uniq[k, a:].astype(bool)
        agree = (table[:, m] == v[m]).sum(axis=1) if m.any() else np.zeros(table.shape[0])
        pool = np.flatnonzero(agree == agree.max())
        out[rows, :a] = table[rng.choice(pool, size=rows.size, replace=True)]
    out = np.where(mask, values, out).astype(np.int8)
    return out


def as_float_targets(y: Union[np.ndarray, torch.Tensor, Sequence]) -> torch.Tensor:
    """0/1 attribute array -> float32 tensor (helper for callers holding numpy int8)."""
    return torch.as_tensor(np.asarray(y), dtype=torch.float32)
