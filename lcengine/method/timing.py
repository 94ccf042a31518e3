# SPDX-License-Identifier: Apache-2.0
"""Wall time of optimizer sampling: the fused :func:`lcengine.optimize_latents` against its
eager autograd loop, on the same prior latents and targets (what an application's report
shows next to its quality figures)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

import numpy as np
import torch

import lcengine
from lcengine.validation import check_int

from .constraints import ArrayLike, LatentConstraints


def time_optimizer(
    lc: LatentConstraints,
    y: ArrayLike,
    mask: Optional[ArrayLike] = None,
    *,
    seed: int = 0,
    repeats: int = 2,
    **overrides: Any,
) -> dict:
    """Times :func:`lcengine.optimize_latents` as ``lc.generate`` runs it (``auto`` backend)
    against ``backend="eager"``; best of ``repeats`` calls each.

    Args:
        lc: fitted latent constraints.
        y: target attribute vectors (used as given). # [N, A]
        mask: requested attributes (None = all). # [N, A] bool
        seed: seed of the prior latents.
        repeats: timed calls per contender (>= 1).
        **overrides: :class:`~lcengine.method.config.SamplingConfig` fields.

    Returns:
        ``{"rows", "max_steps", "repeats", "backend", "fused_seconds", "eager_seconds",
        "speedup", "same_steps_fraction", "max_latent_difference"}``.
    """
    check_int("repeats", repeats, minimum=1)
    if lc.trainer is None:
        raise RuntimeError("time_optimizer needs trained critics: call fit() (or load()) first")
    cfg = dataclasses.replace(lc.sampling, **overrides) if overrides else lc.sampling
    yy, mm = lc.check_targets(y, mask)  # [N, A], [N, A]
    z0 = lc.prior_latents(yy.shape[0], seed)  # [N, D]
    y_t = torch.from_numpy(yy.astype(np.float32)).to(lc.device)  # [N, A]
    m_t = torch.from_numpy(mm).to(lc.device)  # [N, A]
    kwargs = lc.optimizer_arguments(cfg)
    results, seconds = {}, {}
    for backend in ("auto", "eager"):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            results[backend] = lcengine.optimize_latents(
                z0,
                y_t,
                m_t,
                lc.trainer.realism,
                lc.attribute_critic,
                lc.sigma_bar,
                backend=backend,
                **kwargs,
            )
            best = min(best, time.perf_counter() - t0)
        seconds[backend] = best
    fused, eager = results["auto"], results["eager"]
    return {
        "rows": int(yy.shape[0]),
        "max_steps": int(cfg.steps),
        "repeats": repeats,
        "backend": fused.backend,
        "fused_seconds": seconds["auto"],
        "eager_seconds": seconds["eager"],
        "speedup": seconds["eager"] / seconds["auto"],
        "same_steps_fraction": float((fused.steps == eager.steps).float().mean()),
        "max_latent_difference": float((fused.latents - eager.latents).abs().max()),
    }


__all__ = ["time_optimizer"]
