# SPDX-License-Identifier: Apache-2.0
"""Metrics of generated outputs, independent of the method's own critics.

* :func:`attribute_metrics` compares requested and measured attributes (accuracy, precision,
  recall, F1 per attribute, overall accuracy over all requested entries, the fraction of
  rows whose every requested attribute is right, and, for each categorical group of the
  :class:`~lcengine.method.attributes.AttributeSpec`, the identity accuracy: the argmax over
  the group's columns against the requested class). How an output's attributes are measured is
  the application's business (a classifier, a rule, a measurement on the output itself).
* :func:`frechet_distance` between Gaussians fitted to two feature sets (the FCD when the
  features are a classifier's penultimate activations).
* :func:`evaluate_methods` generates with each sampling method for the same targets and
  measures the outputs with both.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from .attributes import AttributeSpec, as_attribute_spec
from .constraints import LatentConstraints
from .requests import as_binary_array
from .sampling import METHODS, SampleResult

ArrayLike = Union[np.ndarray, torch.Tensor]


def _safe_div(num: float, den: float) -> Optional[float]:
    return float(num) / float(den) if den > 0 else None


def attribute_metrics(
    requested: ArrayLike,
    measured: ArrayLike,
    mask: Optional[ArrayLike],
    attributes: Union[AttributeSpec, Sequence[str]],
) -> dict:
    """How well measured attributes match the requested ones.

    ``requested`` plays the role of the label and ``measured`` of the prediction: precision of
    attribute ``a`` is the fraction of outputs measured ``a`` that were asked to be ``a``, recall
    the fraction of outputs asked to be ``a`` that came out ``a``. Only entries with ``mask`` True
    count (unrequested attributes are free). For real held-out data pass their true attributes
    as ``requested`` and ``mask=None``: the figures are then the measurement's own accuracy.

    Args:
        requested: target 0/1 per image, or one row broadcast to all images. # [N, A] or [A]
        measured: measured 0/1 attributes. # [N, A]
        mask: which entries were requested; None = all. # [N, A], [A] or None
        attributes: the :class:`~lcengine.method.attributes.AttributeSpec` of the A columns
            (or their names alone: then no group figures).

    Returns:
        ``{"per_attribute": {name: {"accuracy", "precision", "recall", "f1", "support",
        "requested_positive", "measured_positive"}}, "per_group", "overall_accuracy",
        "row_accuracy", "num_entries", "num_rows"}``. ``support`` is the number of masked entries;
        ``overall_accuracy`` is the fraction of all masked entries that match, ``row_accuracy``
        the fraction of rows with at least one masked entry where *every* masked entry
        matches (the all-attributes-right rate). ``per_group`` maps each group of the spec to
        ``{"accuracy", "support", "columns"}``: over the rows that request a class of the group
        (a masked 1 in its columns; ``support`` of them), the fraction whose measured class,
        the argmax over the group's columns, is the requested one (a row measured with no
        class of the group counts as wrong). A figure with an empty denominator is None
        (strict JSON has no NaN).
    """
    spec = as_attribute_spec(attributes)
    names = spec.columns
    meas = as_binary_array(measured, "measured")
    if meas.ndim != 2 or meas.shape[1] != len(names):
        raise ValueError(
            f"measured must have shape [N, {len(names)}] (one column per attribute "
            f"name), got {list(meas.shape)}"
        )
    n, a = meas.shape
    req = as_binary_array(requested, "requested")
    if req.shape == (a,):
        req = np.broadcast_to(req, (n, a))
    if req.shape != (n, a):
        raise ValueError(f"requested must have shape [{n}, {a}] or [{a}], got {list(req.shape)}")
    if mask is None:
        m = np.ones((n, a), dtype=bool)
    else:
        m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
        if m.dtype != np.bool_:
            m = as_binary_array(m, "mask").astype(bool)
        if m.shape == (a,):
            m = np.broadcast_to(m, (n, a))
        if m.shape != (n, a):
            raise ValueError(f"mask must have shape [{n}, {a}] or [{a}], got {list(m.shape)}")
    hit = (req == meas) & m  # [N, A]
    per: dict[str, dict] = {}
    for j, name in enumerate(names):
        mj = m[:, j]
        r, p = req[mj, j] == 1, meas[mj, j] == 1
        tp = int((r & p).sum())
        precision = _safe_div(tp, int(p.sum()))
        recall = _safe_div(tp, int(r.sum()))
        f1 = (
            None
            if precision is None or recall is None
            else (0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
        )
        per[name] = {
            "accuracy": _safe_div(int(hit[:, j].sum()), int(mj.sum())),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": int(mj.sum()),
            "requested_positive": int(r.sum()),
            "measured_positive": int(p.sum()),
        }
    per_group: dict[str, dict] = {}
    for group in spec.groups:
        cols = spec.group_columns(group)
        asked = (req[:, cols] == 1) & m[:, cols]  # [N, K]
        rows_g = asked.any(axis=1)
        requested_class = asked.argmax(axis=1)
        measured_class = meas[:, cols].argmax(axis=1)
        right = rows_g & (measured_class == requested_class) & (meas[:, cols].max(axis=1) == 1)
        per_group[group] = {
            "accuracy": _safe_div(int(right.sum()), int(rows_g.sum())),
            "support": int(rows_g.sum()),
            "columns": [names[c] for c in cols],
        }
    rows = m.any(axis=1)
    row_ok = ((req == meas) | ~m).all(axis=1) & rows
    return {
        "per_attribute": per,
        "per_group": per_group,
        "overall_accuracy": _safe_div(int(hit.sum()), int(m.sum())),
        "row_accuracy": _safe_div(int(row_ok.sum()), int(rows.sum())),
        "num_entries": int(m.sum()),
        "num_rows": int(n),
    }


def _as_features(f, name: str) -> np.ndarray:
    f = np.asarray(f.detach().cpu() if isinstance(f, torch.Tensor) else f, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"{name} must have shape [N, F] with N >= 2, got {list(f.shape)}")
    if not np.isfinite(f).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return f


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative round-off eigenvalues -> 0)."""
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(features_a: ArrayLike, features_b: ArrayLike) -> float:
    """Frechet distance between Gaussians fitted to two feature sets.

    ``||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2)``; the matrix square roots
    come from eigendecompositions of symmetric PSD matrices (no scipy, no complex round-off).
    Covariances are unbiased (``N - 1``). With a classifier's features this is the FCD.

    Args:
        features_a: # [N, F]
        features_b: # [M, F]

    Returns:
        The distance (>= 0), float.
    """
    a = _as_features(features_a, "features_a")
    b = _as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"features_a and features_b must have the same feature dimension, got "
            f"{a.shape[1]} and {b.shape[1]}"
        )
    mu_a, mu_b = a.mean(0), b.mean(0)  # [F], [F]
    c_a = np.atleast_2d(np.cov(a, rowvar=False))  # [F, F]
    c_b = np.atleast_2d(np.cov(b, rowvar=False))  # [F, F]
    s_a = _psd_sqrt(c_a)  # [F, F]
    middle = s_a @ c_b @ s_a  # [F, F]
    middle = 0.5 * (middle + middle.T)  # symmetric up to round-off; eigh needs it exactly
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)).sum())
    d = float(((mu_a - mu_b) ** 2).sum() + np.trace(c_a) + np.trace(c_b) - 2.0 * tr_sqrt)
    return max(d, 0.0)


def feature_diversity(features: ArrayLike, groups: ArrayLike) -> Optional[float]:
    """Mean pairwise Euclidean distance between the feature rows of each group, averaged over
    the groups weighted by their number of pairs (groups of one row have none). Divided by the
    same figure of real data with the same groups, it detects mode collapse within a condition,
    which accuracy and a pooled Frechet distance can miss.

    Args:
        features: one feature row per sample. # [N, F]
        groups: the condition of each row (e.g. the requested class). # [N]

    Returns:
        The mean within-group distance; None when no group has two rows.
    """
    f = _as_features(features, "features").astype(np.float64)  # [N, F]
    g = np.asarray(groups).reshape(-1)  # [N]
    if g.shape[0] != f.shape[0]:
        raise ValueError(f"groups has {g.shape[0]} rows, features has {f.shape[0]}")
    total, pairs = 0.0, 0
    for value in np.unique(g):
        x = f[g == value]  # [k, F]
        k = x.shape[0]
        if k < 2:
            continue
        sq = (x * x).sum(1)  # [k]
        d2 = np.clip(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0, None)  # [k, k]
        total += float(np.sqrt(d2)[np.triu_indices(k, 1)].sum())
        pairs += k * (k - 1) // 2
    return total / pairs if pairs else None


def evaluate_methods(
    lc: LatentConstraints,
    y: ArrayLike,
    mask: Optional[ArrayLike],
    *,
    measure: Callable[[np.ndarray], np.ndarray],
    features: Optional[Callable[[np.ndarray], np.ndarray]] = None,
    reference_features: Optional[np.ndarray] = None,
    methods: Optional[Sequence[str]] = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[dict[str, dict], dict[str, SampleResult]]:
    """Generates with each method for targets ``y`` and measures the outputs independently.

    Args:
        lc: fitted latent constraints.
        y: target attribute vectors, e.g. attributes of held-out data. # [N, A]
        mask: which entries count (None = all). # [N, A]
        measure: ``outputs -> measured 0/1 attributes [N, A]`` (independent of the critics).
        features: ``outputs -> [N, F]`` features for the Frechet distance.
        reference_features: features of real held-out data. # [M, F]
        methods: subset of :data:`~lcengine.method.sampling.METHODS` (default: all).
        seed: seed of the prior samples (shared by all methods: same starting points).
        progress: tqdm bar for the optimizer.

    Returns:
        ``(metrics, samples)``: per method, :func:`attribute_metrics` plus ``fcd``,
        ``accepted_fraction`` (critics' verdict), ``mean_steps`` and ``seconds``; and the
        :class:`~lcengine.method.sampling.SampleResult` per method.
    """
    yy, mm = lc.check_targets(y, mask)
    metrics: dict[str, dict] = {}
    samples: dict[str, SampleResult] = {}
    for method in METHODS if methods is None else methods:
        res = lc.generate(yy, mm, method=method, seed=seed, progress=progress)
        measured = as_binary_array(measure(res.images), "measure(images)")
        m = attribute_metrics(yy, measured, mm, lc.attribute_spec)
        if features is not None and reference_features is not None:
            m["fcd"] = frechet_distance(features(res.images), reference_features)
        m["accepted_fraction"] = float(res.converged.mean())
        m["mean_steps"] = float(res.steps.mean())
        m["seconds"] = res.seconds
        metrics[method] = m
        samples[method] = res
    return metrics, samples


__all__ = ["attribute_metrics", "evaluate_methods", "feature_diversity", "frechet_distance"]
