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

:class:`SampleResult` and :class:`TransformResult` are what
:class:`~lcengine.method.constraints.LatentConstraints` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import numpy as np
import torch
from tqdm.auto import tqdm

import lcengine
from lcengine import OptimizeResult  # the op's result type: one definition
from lcengine.reference import constraint_satisfied_ref, optimize_latents_ref
from lcengine.validation import (
    check_finite_tensor,
    check_float,
    check_int,
    check_positive_float,
    check_probability,
)

from .methods import METHODS
from .requests import check_target_tensors

RealismFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
AttributeFn = Callable[[torch.Tensor], torch.Tensor]


def constraint_satisfied(
    realism_logits: torch.Tensor,
    attribute_logits: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    *,
    tau_r: float = 0.5,
    tau_a: float = 0.5,
) -> torch.Tensor:
    """The per-row stopping rule of the latent optimizer (defined once, in
    :func:`lcengine.reference.constraint_satisfied_ref`): ``sigmoid(D) > tau_r`` and every
    masked attribute on its requested side with confidence ``tau_a``. # [B] bool
    """
    return constraint_satisfied_ref(
        realism_logits, attribute_logits, y, mask, tau_r=tau_r, tau_a=tau_a
    )


def optimize_latents_eager(
    z_start: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    realism_critic: RealismFn,
    attribute_critic: AttributeFn,
    sigma_bar: Union[float, torch.Tensor],
    *,
    w_realism: float = 1.0,
    w_attr: float = 1.0,
    w_dist: float = 0.1,
    tau_r: float = 0.5,
    tau_a: float = 0.5,
    steps: int = 300,
    lr: float = 0.05,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    realism_attributes: Optional[int] = None,
    progress: bool = False,
    desc: str = "optimize latents",
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
        raise ValueError(
            f"z_start must be a tensor of shape [B, D], got "
            f"{getattr(z_start, 'shape', type(z_start).__name__)}"
        )
    if not z_start.is_floating_point():
        raise TypeError(f"z_start must be a floating tensor, got {z_start.dtype}")
    check_finite_tensor("z_start", z_start)
    b = z_start.shape[0]
    num_attr = y.shape[1] if isinstance(y, torch.Tensor) and y.dim() == 2 else -1
    y, mask = check_target_tensors(y, mask, b, num_attr)
    check_int("steps", steps)
    w_realism, w_attr, w_dist = (
        check_positive_float(n, v, allow_zero=True)
        for n, v in (("w_realism", w_realism), ("w_attr", w_attr), ("w_dist", w_dist))
    )
    tau_r = check_probability("tau_r", tau_r)
    tau_a = check_float("tau_a", tau_a, low=0.5, high=1.0, high_open=True)
    if realism_attributes is None:
        realism_attributes = int(getattr(realism_critic, "num_attributes", num_attr))
    if not 0 <= realism_attributes <= num_attr:
        raise ValueError(f"realism_attributes must be in [0, {num_attr}], got {realism_attributes}")

    bar = tqdm(total=steps, desc=desc, disable=None if progress else True, leave=False)

    def on_step(t: int, converged: torch.Tensor) -> None:
        bar.update(1)
        bar.set_postfix(converged=f"{int(converged.sum())}/{b}")

    try:
        z, converged, steps_taken, realism_prob, attribute_prob = optimize_latents_ref(
            z_start.detach().to(torch.float32),
            y,
            mask,
            realism_critic,
            attribute_critic,
            sigma_bar,
            w_realism=w_realism,
            w_attr=w_attr,
            w_dist=w_dist,
            tau_r=tau_r,
            tau_a=tau_a,
            steps=steps,
            lr=lr,
            betas=betas,
            eps=eps,
            realism_attributes=realism_attributes,
            on_step=on_step,
        )
    finally:
        bar.close()
    return OptimizeResult(
        latents=z,
        converged=converged,
        steps=steps_taken,
        realism_prob=realism_prob,
        attribute_prob=attribute_prob,
    )


def optimizer_arguments(cfg, realism_attributes: int) -> dict:
    """Keyword arguments of :func:`lcengine.optimize_latents` for a
    :class:`~lcengine.method.config.SamplingConfig` and the realism critic's attribute count."""
    return dict(
        w_realism=cfg.w_realism,
        w_attr=cfg.w_attr,
        w_dist=cfg.w_dist,
        tau_r=cfg.tau_r,
        tau_a=cfg.tau_a,
        steps=cfg.steps,
        lr=cfg.lr,
        realism_attributes=realism_attributes,
    )


def run_optimizer(
    z0: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    realism_critic: Callable,
    attribute_critic: Callable,
    sigma_bar: torch.Tensor,
    cfg,
    *,
    realism_attributes: int,
    progress: bool = False,
    desc: str = "optimize",
) -> OptimizeResult:
    """Latent optimization with a sampling config through the op
    :func:`lcengine.optimize_latents` (fused where built, else the eager loop). The op runs the
    whole loop in one call, so ``progress`` shows no per-step bar there; it takes
    ``steps >= 1``, so ``steps == 0`` (evaluate the start, no update) goes through
    :func:`optimize_latents_eager`. # z0 [B, D], y [B, A], mask [B, A]"""
    kwargs = optimizer_arguments(cfg, realism_attributes)
    if cfg.steps == 0:
        return optimize_latents_eager(
            z0, y, mask, realism_critic, attribute_critic, sigma_bar,
            progress=progress, desc=desc, **kwargs,
        )  # fmt: skip
    return lcengine.optimize_latents(
        z0, y, mask, realism_critic, attribute_critic, sigma_bar, **kwargs
    )


@torch.no_grad()
def actor_latents(
    actor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 4096,
) -> torch.Tensor:
    """``G(z, y)`` in batches without gradients; reads the leading ``actor.num_attributes``
    columns of ``y`` (later columns are zero-shot constraints the actor was not trained on).

    Args:
        z: starting latents. # [B, D]
        y: requested attributes. # [B, A]

    Returns:
        Transformed latents. # [B, D]
    """
    check_finite_tensor("z", z)
    a = int(getattr(actor, "num_attributes", y.shape[1]))
    y = y[:, :a].to(torch.float32)
    return (
        torch.cat(
            [
                actor(z[i : i + batch_size], y[i : i + batch_size])
                for i in range(0, z.shape[0], batch_size)
            ]
        )
        if z.shape[0]
        else z.clone()
    )


@dataclass
class SampleResult:
    """Conditional samples.

    Attributes:
        latents: final latents. # [N, D]
        images: decoded outputs, float32. # [N, *data_shape]
        attributes: full target attribute vectors (requested values, the rest completed from
            data). # [N, A] int8
        mask: requested attributes. # [N, A] bool
        converged: the critics accept the row (for ``optimize``: the stopping rule was met
            within the step limit; for the other methods: the same rule evaluated on the
            result). # [N] bool
        steps: optimizer updates per row (0 for the one-pass methods). # [N] int64
        method: "prior" | "actor" | "optimize" | "baseline".
        seconds: wall time of the generation (decoding included).
    """

    latents: torch.Tensor
    images: np.ndarray
    attributes: np.ndarray
    mask: np.ndarray
    converged: np.ndarray
    steps: np.ndarray
    method: str
    seconds: float = 0.0


@dataclass
class TransformResult:
    """Identity-preserving transformations of real inputs.

    Attributes:
        latents: edited latents. # [B, D]
        images: decoded edits, float32. # [B, *data_shape]
        source_latents: encoder means of the inputs (the starting points). # [B, D]
        source_images: their reconstructions. # [B, *data_shape]
        attributes: target attribute vectors (source attributes with the changes). # [B, A]
        mask: the requested changes. # [B, A] bool
        converged: the stopping rule was met within the step limit. # [B] bool
        steps: optimizer updates per row. # [B] int64
        latent_distance: L2 distance from the source latent. # [B]
        pixel_distance: mean absolute per-pixel difference from the reconstruction. # [B]
    """

    latents: torch.Tensor
    images: np.ndarray
    source_latents: torch.Tensor
    source_images: np.ndarray
    attributes: np.ndarray
    mask: np.ndarray
    converged: np.ndarray
    steps: np.ndarray
    latent_distance: np.ndarray
    pixel_distance: np.ndarray
    method: str = "optimize"

    def summary(self) -> dict:
        """Converged fraction, mean steps, mean latent and pixel distances."""
        return {
            "converged_fraction": float(self.converged.mean()),
            "mean_steps": float(self.steps.mean()),
            "mean_latent_distance": float(self.latent_distance.mean()),
            "mean_pixel_distance": float(self.pixel_distance.mean()),
            "num_rows": int(self.converged.shape[0]),
        }


__all__ = [
    "METHODS",
    "OptimizeResult",
    "SampleResult",
    "TransformResult",
    "actor_latents",
    "constraint_satisfied",
    "optimize_latents_eager",
    "optimizer_arguments",
    "run_optimizer",
]
