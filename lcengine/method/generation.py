# SPDX-License-Identifier: Apache-2.0
"""Generation and identity-preserving transformation for :class:`LatentConstraints`.

The bodies of :meth:`LatentConstraints.generate` and :meth:`LatentConstraints.transform`
(documented there): each takes the fitted object ``lc`` first. Latents, targets and masks are
put on ``lc.device`` (results' ``latents`` stay there); decoding goes through the model, which
moves them to its own device; the numpy arrays of the results are on the CPU.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import torch

from .requests import as_binary_array
from .sampling import METHODS, SampleResult, TransformResult, actor_latents

if TYPE_CHECKING:
    from .constraints import LatentConstraints, Request

ArrayLike = Union[np.ndarray, torch.Tensor]


def refuse_zero_shot(lc: "LatentConstraints", mask: np.ndarray, method: str, what: str) -> None:
    """The actor and the baseline know the data's attributes only: a request that names a
    zero-shot attribute (a requested column past the data's) is refused for them, naming the
    method and the attributes, instead of being dropped. # mask [N, A]"""
    a_base = len(lc.base_attribute_names)
    requested = np.asarray(mask)[:, a_base:].any(axis=0)  # [A - A_base]
    if method in ("actor", "baseline") and requested.any():
        names = [n for n, r in zip(lc.attribute_names[a_base:], requested) if r]
        raise ValueError(
            f"{what}(method={method!r}) cannot satisfy the zero-shot attribute(s) {names}: "
            f"the {method} knows only the attributes it was fitted with "
            f"({list(lc.base_attribute_names)}); use method='optimize', which reads the "
            "zero-shot critics"
        )


def optimize_from(
    lc: "LatentConstraints",
    z0: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    cfg: Any,
    *,
    progress: bool = False,
    desc: str = "optimize",
) -> Any:
    """The optimizer's samples for starting latents and targets on ``lc.device``: from ``z0``
    itself, or with ``cfg.start == "actor"`` from the actor's output for it.
    # z0 [N, D], y [N, A] float, mask [N, A] bool -> lcengine.OptimizeResult"""
    if cfg.start == "actor":
        z0 = actor_latents(lc.require_trainer("optimize").actor, z0, y)  # [N, D]
    return lc.run_optimizer(z0, y, mask, cfg, progress=progress, desc=desc)


def generate(
    lc: "LatentConstraints",
    y: ArrayLike,
    mask: Optional[ArrayLike] = None,
    *,
    method: str = "actor",
    seed: int = 0,
    z_start: Optional[ArrayLike] = None,
    complete: bool = False,
    progress: bool = False,
    **overrides: Any,
) -> SampleResult:
    """Samples for per-row targets (see :meth:`LatentConstraints.generate`)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    lc.require_trainer(f"sample(method={method!r})")
    cfg = dataclasses.replace(lc.sampling, **overrides) if overrides else lc.sampling
    yy, mm = lc.check_targets(y, mask)  # [N, A], [N, A]
    refuse_zero_shot(lc, mm, method, "sample")
    n = yy.shape[0]
    if complete:
        yy = lc.complete(yy, mm, seed=seed)
    t0 = time.perf_counter()
    if z_start is None:
        z0 = lc.prior_latents(n, seed)  # [N, D]
    else:
        z0 = lc.model.check_latents(z_start, "z_start").detach().to(lc.device, torch.float32)
        if z0.shape[0] != n:
            raise ValueError(f"z_start has {z0.shape[0]} rows, y has {n}")
    y_t = torch.from_numpy(yy.astype(np.float32)).to(lc.device)  # [N, A]
    m_t = torch.from_numpy(np.ascontiguousarray(mm)).to(lc.device)  # [N, A]
    steps = np.zeros(n, dtype=np.int64)
    a_base = len(lc.base_attribute_names)
    res = None
    if method == "prior":
        z = z0
    elif method == "actor":
        z = actor_latents(lc.trainer.actor, z0, y_t)  # [N, D]
    elif method == "baseline":
        z = lc.baseline.apply(z0, yy[:, :a_base], mm[:, :a_base])  # [N, D] on the device
    else:
        res = optimize_from(lc, z0, y_t, m_t, cfg, progress=progress)
        z, steps = res.latents, res.steps.cpu().numpy()
    if not torch.isfinite(z).all():
        raise FloatingPointError(f"method {method!r} produced non-finite latents")
    if res is not None:
        converged = res.converged.cpu().numpy()
    else:
        converged = lc.accepted(z, y_t, m_t, cfg).cpu().numpy()
    images = lc.decode(z)  # [N, *data_shape]
    return SampleResult(
        latents=z,
        images=images,
        attributes=yy,
        mask=mm,
        converged=converged,
        steps=steps,
        method=method,
        seconds=time.perf_counter() - t0,
    )


def transform(
    lc: "LatentConstraints",
    x: ArrayLike,
    changes: "Request",
    *,
    source_attributes: Optional[ArrayLike] = None,
    method: str = "optimize",
    progress: bool = False,
    **overrides: Any,
) -> TransformResult:
    """Identity-preserving transformation (see :meth:`LatentConstraints.transform`)."""
    if method not in ("optimize", "actor", "baseline"):
        raise ValueError(
            f"method must be 'optimize', 'actor' or 'baseline' for a transform, got {method!r}"
        )
    t = lc.require_trainer("transform")
    cfg = (
        dataclasses.replace(lc.transform_config, **overrides) if overrides else lc.transform_config
    )
    mu, _ = lc.model.encode_dataset(x)  # [B, D]
    mu = mu.detach().to(lc.device, torch.float32)
    b = mu.shape[0]
    a_base = len(lc.base_attribute_names)
    if (
        isinstance(changes, tuple)
        and len(changes) == 2
        and all(isinstance(c, (np.ndarray, torch.Tensor)) for c in changes)
    ):
        values, mask = lc.check_targets(changes[0], changes[1], b)  # [B, A] x2
    else:
        v, m = lc.parse(changes)  # [A], [A]
        values, mask = np.broadcast_to(v, (b, v.size)), np.broadcast_to(m, (b, m.size))
    refuse_zero_shot(lc, mask, method, "transform")
    if source_attributes is None:
        src = lc.source_attributes(mu)  # [B, A_data]
    else:
        src = as_binary_array(source_attributes, "source_attributes")
        if src.shape != (b, a_base):
            raise ValueError(
                f"source_attributes must have shape [{b}, {a_base}], got {list(src.shape)}"
            )
    full = np.zeros((b, lc.num_attributes), dtype=np.int8)  # [B, A]
    full[:, :a_base] = src
    y = np.where(mask, values, full).astype(np.int8)  # [B, A]
    y_t = torch.from_numpy(y.astype(np.float32)).to(lc.device)  # [B, A]
    m_t = torch.from_numpy(np.array(mask)).to(lc.device)  # [B, A]
    steps = np.zeros(b, dtype=np.int64)
    if method == "optimize":
        z0 = actor_latents(t.actor, mu, y_t) if cfg.start == "actor" else mu  # [B, D]
        res = lc.run_optimizer(z0, y_t, m_t, cfg, progress=progress, desc="transform")
        z, converged, steps = res.latents, res.converged.cpu().numpy(), res.steps.cpu().numpy()
    else:
        if method == "actor":
            z = actor_latents(t.actor, mu, y_t)  # [B, D]
        else:
            z = lc.baseline.apply(
                mu, y[:, :a_base], np.array(mask[:, :a_base]), source_attributes=src
            )  # [B, D] on the device
        converged = lc.accepted(z, y_t, m_t, cfg).cpu().numpy()
    images = lc.decode(z)  # [B, *data_shape]
    source_images = lc.decode(mu)  # [B, *data_shape]
    lat = (z - mu).norm(dim=1).cpu().numpy()  # [B]
    pix = np.abs(images - source_images).reshape(b, -1).mean(axis=1)  # [B]
    return TransformResult(
        latents=z,
        images=images,
        source_latents=mu,
        source_images=source_images,
        attributes=y,
        mask=np.array(mask),
        converged=converged,
        steps=steps,
        latent_distance=lat,
        pixel_distance=pix,
        method=method,
    )
