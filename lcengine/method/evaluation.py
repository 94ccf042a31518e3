# SPDX-License-Identifier: Apache-2.0
"""Evaluation independent of the method's training: a pixel classifier, attribute metrics, FCD.

* :class:`PixelClassifier` is a small CNN that reads digit identity off pixels. It is trained
  only on real training images (:func:`train_pixel_classifier`) and never used to train critics,
  so it is an independent judge of generated images. Its penultimate activations
  (:meth:`PixelClassifier.features`) define the feature space of the Frechet distance.
* :func:`measure_attributes` = digit one-hot from the classifier + shape attributes measured
  directly on the image (:func:`lcengine.method.data.shape_attributes`).
* :func:`attribute_metrics` compares requested and measured attributes (accuracy, precision,
  recall, F1 per attribute, and overall accuracy over all requested entries).
* :func:`frechet_distance` between Gaussians fitted to two feature sets (FCD when the features
  are the classifier's).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .data import (
    ATTRIBUTE_NAMES,
    NUM_DIGITS,
    check_images,
    digit_one_hot,
    shape_attributes,
)
from .models import atomic_write_json, load_tensors_checked, read_json_file, save_tensors_atomic

ArrayLike = Union[np.ndarray, torch.Tensor]

CLASSIFIER_WEIGHTS_FILE = "classifier.safetensors"
CLASSIFIER_CONFIG_FILE = "classifier.json"
_CLASSIFIER_FORMAT = "lcengine.PixelClassifier/1"
# Normalization constants of MNIST pixels in [0, 1] (mean and std over the training images).
_PIXEL_MEAN = 0.1307
_PIXEL_STD = 0.3081


class PixelClassifier(nn.Module):
    """Small CNN digit classifier on 28x28 images in [0, 1].

    ``conv3x3(c1) -> ReLU -> maxpool2 -> conv3x3(c2) -> ReLU -> maxpool2 -> linear(feature_dim)
    -> ReLU -> linear(10)``. The ``feature_dim`` ReLU activations are the FCD features.

    Args:
        channels: output channels of the two conv layers.
        feature_dim: width of the penultimate layer.
    """

    def __init__(self, channels: Sequence[int] = (16, 32), feature_dim: int = 128):
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        if c1 < 1 or c2 < 1 or int(feature_dim) < 1:
            raise ValueError(f"channels and feature_dim must be positive, got {channels!r}, "
                             f"{feature_dim!r}")
        self.channels = (c1, c2)
        self.feature_dim = int(feature_dim)
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.fc = nn.Linear(c2 * 7 * 7, self.feature_dim)
        self.out = nn.Linear(self.feature_dim, NUM_DIGITS)
        self.history: list[dict] = []

    def config(self) -> dict:
        """Architecture hyper-parameters, enough to rebuild the module."""
        return {"channels": list(self.channels), "feature_dim": self.feature_dim}

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Images to penultimate activations. # [B, 28, 28] -> [B, F]"""
        h = ((x - _PIXEL_MEAN) / _PIXEL_STD).unsqueeze(1)  # [B, 1, 28, 28]
        h = F.max_pool2d(F.relu(self.conv1(h)), 2)  # [B, c1, 14, 14]
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)  # [B, c2, 7, 7]
        return F.relu(self.fc(h.flatten(1)))  # [B, F]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Digit logits. # [B, 28, 28] -> [B, 10]"""
        return self.out(self._trunk(x))

    @torch.no_grad()
    def _batched(self, images: ArrayLike, fn: Callable, batch_size: int) -> torch.Tensor:
        x = torch.from_numpy(check_images(images).astype(np.float32))  # [N, 28, 28]
        was_training = self.training
        self.eval()
        try:
            outs = [fn(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        finally:
            self.train(was_training)
        if not outs:
            return torch.zeros(0, 0)
        return torch.cat(outs)

    def logits(self, images: ArrayLike, batch_size: int = 1000) -> np.ndarray:
        """Digit logits, float32. # [N, 28, 28] -> [N, 10]"""
        return self._batched(images, self.forward, batch_size).numpy().reshape(-1, NUM_DIGITS)

    def predict(self, images: ArrayLike, batch_size: int = 1000) -> np.ndarray:
        """Predicted digit, int64. # [N, 28, 28] -> [N]"""
        return self.logits(images, batch_size).argmax(axis=1).astype(np.int64)

    def features(self, images: ArrayLike, batch_size: int = 1000) -> np.ndarray:
        """Penultimate ReLU activations (the FCD feature space), float64. # [N, 28, 28] -> [N, F]"""
        return self._batched(images, self._trunk, batch_size).numpy().astype(
            np.float64).reshape(-1, self.feature_dim)

    def save(self, path_dir: Union[str, os.PathLike]) -> Path:
        """Same as :func:`save_classifier`."""
        return save_classifier(self, path_dir)

    @classmethod
    def load(cls, path_dir: Union[str, os.PathLike]) -> "PixelClassifier":
        """Same as :func:`load_classifier`."""
        return load_classifier(path_dir)


def train_pixel_classifier(images: ArrayLike, digits: ArrayLike, *, seed: int = 0,
                           epochs: int = 8, batch_size: int = 64, lr: float = 2e-3,
                           channels: Sequence[int] = (16, 32), feature_dim: int = 128,
                           progress: bool = True) -> PixelClassifier:
    """Trains the evaluation classifier on real training images (Adam, cross-entropy, seeded).

    On the 4,000 embedded training digits the defaults take well under a minute on 2 cores. The
    per-epoch history ``[{"epoch", "loss", "train_accuracy", "seconds"}]`` is kept as
    ``classifier.history``. Speed knob: ``epochs`` (2 epochs already give ~95% on held-out
    digits).

    Args:
        images: real training images in [0, 1]. # [N, 28, 28]
        digits: labels 0..9. # [N]
        seed: seeds initialization and shuffling.
        epochs, batch_size, lr: optimization settings.
        channels, feature_dim: architecture (see :class:`PixelClassifier`).
        progress: show a tqdm bar (off automatically when not a TTY).

    Returns:
        The trained classifier in eval mode.
    """
    from tqdm.auto import tqdm

    x = torch.from_numpy(check_images(images).astype(np.float32))  # [N, 28, 28]
    y_np = np.asarray(digits.detach().cpu() if isinstance(digits, torch.Tensor) else digits)
    digit_one_hot(y_np)  # validates: 1-D integers in 0..9
    if y_np.shape[0] != x.shape[0]:
        raise ValueError(f"digits has {y_np.shape[0]} labels for {x.shape[0]} images")
    if x.shape[0] < 1:
        raise ValueError("images must hold at least one image")
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    y = torch.from_numpy(y_np.astype(np.int64))  # [N]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clf = PixelClassifier(channels=channels, feature_dim=feature_dim)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    n = x.shape[0]
    clf.train()
    bar = tqdm(range(epochs), desc="train pixel classifier", disable=None if progress else True)
    for epoch in bar:
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        tot, correct = 0.0, 0
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            logits = clf(x[idx])  # [b, 10]
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * idx.numel()
            correct += int((logits.argmax(1) == y[idx]).sum())
        if not math.isfinite(tot):
            raise FloatingPointError(f"classifier training diverged at epoch {epoch}; lower lr")
        clf.history.append({"epoch": epoch, "loss": tot / n, "train_accuracy": correct / n,
                            "seconds": time.perf_counter() - t0})
        bar.set_postfix(loss=f"{tot / n:.3f}", acc=f"{correct / n:.3f}")
    return clf.eval()


def save_classifier(clf: PixelClassifier, path_dir: Union[str, os.PathLike]) -> Path:
    """Saves ``classifier.safetensors`` + ``classifier.json`` in ``path_dir`` (atomic writes)."""
    if not isinstance(clf, PixelClassifier):
        raise TypeError(f"clf must be a PixelClassifier, got {type(clf).__name__}")
    d = Path(path_dir)
    if d.exists() and not d.is_dir():
        raise ValueError(f"path_dir {d} exists and is not a folder")
    d.mkdir(parents=True, exist_ok=True)
    save_tensors_atomic(d / CLASSIFIER_WEIGHTS_FILE, clf.state_dict(),
                        metadata={"format": _CLASSIFIER_FORMAT})
    atomic_write_json(d / CLASSIFIER_CONFIG_FILE, {"format": _CLASSIFIER_FORMAT,
                                                   "config": clf.config(),
                                                   "history": clf.history})
    return d


def load_classifier(path_dir: Union[str, os.PathLike]) -> PixelClassifier:
    """Loads a classifier saved by :func:`save_classifier`, validating both files.

    Raises:
        ValueError: a missing, corrupted or mismatched file (the message names it).
    """
    d = Path(path_dir)
    cfg_path = d / CLASSIFIER_CONFIG_FILE
    meta = read_json_file(cfg_path, "load_classifier")
    if meta.get("format") != _CLASSIFIER_FORMAT or not isinstance(meta.get("config"), dict):
        raise ValueError(f"load_classifier: {cfg_path} is not an lcengine classifier config "
                         f"(expected format {_CLASSIFIER_FORMAT!r} and a 'config' object)")
    try:
        clf = PixelClassifier(**meta["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"load_classifier: invalid architecture in {cfg_path}: {e}") from e
    tensors = load_tensors_checked(d / CLASSIFIER_WEIGHTS_FILE, clf.state_dict(),
                                   "load_classifier")
    clf.load_state_dict(tensors)
    clf.history = list(meta.get("history", []))
    return clf.eval()


def measure_attributes(images: ArrayLike, classifier: PixelClassifier,
                       thresholds: Mapping[str, float]) -> np.ndarray:
    """The 15 attributes of ``ATTRIBUTE_NAMES`` measured on images, without the method's models.

    Args:
        images: values in [0, 1]. # [N, 28, 28]
        classifier: the pixel classifier (digit identity).
        thresholds: shape thresholds (``MnistAttributes.shape_thresholds``).

    Returns:
        int8 0/1: digit one-hot from the classifier, then the shape attributes. # [N, 15]
    """
    if not isinstance(classifier, PixelClassifier):
        raise TypeError(f"classifier must be a PixelClassifier, got {type(classifier).__name__}")
    x = check_images(images)
    return np.concatenate([digit_one_hot(classifier.predict(x)),
                           shape_attributes(x, thresholds)], axis=1).astype(np.int8)


def _as_binary(a, name: str, shape: Optional[tuple[int, ...]] = None) -> np.ndarray:
    a = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a)
    if a.dtype == np.bool_:
        a = a.astype(np.int8)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"{name} must be a 0/1 array, got dtype {a.dtype}")
    if a.size and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(a.shape)}")
    return a.astype(np.int8)


def _safe_div(num: float, den: float) -> Optional[float]:
    return float(num) / float(den) if den > 0 else None


def attribute_metrics(requested: ArrayLike, measured: ArrayLike, mask: Optional[ArrayLike] = None,
                      attribute_names: Sequence[str] = ATTRIBUTE_NAMES) -> dict:
    """How well measured attributes match the requested ones.

    ``requested`` plays the role of the label and ``measured`` of the prediction: precision of
    ``thick`` is the fraction of images measured thick that were asked to be thick, recall the
    fraction of images asked to be thick that came out thick. Only entries with ``mask`` True
    count (unrequested attributes are free). For real held-out images pass their true attributes
    as ``requested`` and ``mask=None``: the figures are then the measurement's own accuracy.

    Args:
        requested: target 0/1 per image, or one row broadcast to all images. # [N, A] or [A]
        measured: measured 0/1 attributes. # [N, A]
        mask: which entries were requested; None = all. # [N, A], [A] or None
        attribute_names: the A column names.

    Returns:
        ``{"per_attribute": {name: {"accuracy", "precision", "recall", "f1", "support",
        "requested_positive", "measured_positive"}}, "overall_accuracy", "row_accuracy",
        "num_entries", "num_rows"}``. ``support`` is the number of masked entries;
        ``overall_accuracy`` is the fraction of all masked entries that match, ``row_accuracy``
        the fraction of rows with at least one masked entry where *every* masked entry
        matches. A figure with an empty denominator is None (strict JSON has no NaN).
    """
    names = tuple(attribute_names)
    meas = _as_binary(measured, "measured")
    if meas.ndim != 2 or meas.shape[1] != len(names):
        raise ValueError(f"measured must have shape [N, {len(names)}] (one column per attribute "
                         f"name), got {list(meas.shape)}")
    n, a = meas.shape
    req = _as_binary(requested, "requested")
    if req.shape == (a,):
        req = np.broadcast_to(req, (n, a))
    if req.shape != (n, a):
        raise ValueError(f"requested must have shape [{n}, {a}] or [{a}], got {list(req.shape)}")
    if mask is None:
        m = np.ones((n, a), dtype=bool)
    else:
        m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
        if m.dtype != np.bool_:
            m = _as_binary(m, "mask").astype(bool)
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
        f1 = (None if precision is None or recall is None
              else (0.0 if precision + recall == 0 else
                    2 * precision * recall / (precision + recall)))
        per[name] = {"accuracy": _safe_div(int(hit[:, j].sum()), int(mj.sum())),
                     "precision": precision, "recall": recall, "f1": f1,
                     "support": int(mj.sum()), "requested_positive": int(r.sum()),
                     "measured_positive": int(p.sum())}
    rows = m.any(axis=1)
    row_ok = ((req == meas) | ~m).all(axis=1) & rows
    return {"per_attribute": per,
            "overall_accuracy": _safe_div(int(hit.sum()), int(m.sum())),
            "row_accuracy": _safe_div(int(row_ok.sum()), int(rows.sum())),
            "num_entries": int(m.sum()), "num_rows": int(n)}


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
    Covariances are unbiased (``N - 1``). With the pixel classifier's features this is the FCD.

    Args:
        features_a: # [N, F]
        features_b: # [M, F]

    Returns:
        The distance (>= 0), float.
    """
    a = _as_features(features_a, "features_a")
    b = _as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features_a and features_b must have the same feature dimension, got "
                         f"{a.shape[1]} and {b.shape[1]}")
    mu_a, mu_b = a.mean(0), b.mean(0)  # [F], [F]
    c_a = np.atleast_2d(np.cov(a, rowvar=False))  # [F, F]
    c_b = np.atleast_2d(np.cov(b, rowvar=False))  # [F, F]
    s_a = _psd_sqrt(c_a)  # [F, F]
    middle = s_a @ c_b @ s_a  # [F, F]
    middle = 0.5 * (middle + middle.T)  # symmetric up to round-off; eigh needs it exactly
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)).sum())
    d = float(((mu_a - mu_b) ** 2).sum() + np.trace(c_a) + np.trace(c_b) - 2.0 * tr_sqrt)
    return max(d, 0.0)


def evaluate_images(images: ArrayLike, requested: ArrayLike, mask: Optional[ArrayLike],
                    classifier: PixelClassifier, thresholds: Mapping[str, float],
                    reference_features: Optional[ArrayLike], *,
                    attribute_names: Sequence[str] = ATTRIBUTE_NAMES,
                    rules: Optional[Mapping[str, Callable[[np.ndarray], ArrayLike]]] = None
                    ) -> dict:
    """Attribute metrics and FCD of a batch of (generated or real) images.

    Built-in attributes (``ATTRIBUTE_NAMES``) are measured by :func:`measure_attributes`; any
    other column of ``attribute_names`` (e.g. a zero-shot constraint) must have a rule in
    ``rules``: ``rule(images [N, 28, 28]) -> 0/1 or bool [N]``.

    Args:
        images: values in [0, 1]. # [N, 28, 28]
        requested: requested attributes per image or one row for all. # [N, A] or [A]
        mask: requested entries (None = all). # [N, A], [A] or None
        classifier: the pixel classifier.
        thresholds: shape thresholds.
        reference_features: ``classifier.features`` of held-out real images (for FCD), or
            None to skip FCD. # [M, F]
        attribute_names: names of the A columns.
        rules: measurement for non-built-in attribute names.

    Returns:
        :func:`attribute_metrics`'s dict plus ``"fcd"`` (float, or None without reference
        features) and ``"num_images"``.
    """
    names = tuple(attribute_names)
    x = check_images(images)  # [N, 28, 28]
    if x.shape[0] < 1:
        raise ValueError("images must hold at least one image")
    builtin = measure_attributes(x, classifier, thresholds)  # [N, 15]
    cols = []
    rules = dict(rules or {})
    for name in names:
        if name in ATTRIBUTE_NAMES:
            cols.append(builtin[:, ATTRIBUTE_NAMES.index(name)])
        elif name in rules:
            v = np.asarray(rules[name](x))
            if v.shape != (x.shape[0],):
                raise ValueError(f"rule {name!r} returned shape {list(v.shape)}, expected "
                                 f"[{x.shape[0]}]")
            cols.append(_as_binary(v.astype(np.int8) if v.dtype == np.bool_ else v,
                                   f"rule {name!r} output"))
        else:
            raise ValueError(f"attribute {name!r} is not built in ({list(ATTRIBUTE_NAMES)}); "
                             "pass rules={name: predicate} to measure it")
    measured = np.stack(cols, axis=1).astype(np.int8)  # [N, A]
    out = attribute_metrics(requested, measured, mask, names)
    fcd = None
    if reference_features is not None:
        fcd = frechet_distance(classifier.features(x), reference_features)
    out["fcd"] = fcd
    out["num_images"] = int(x.shape[0])
    return out


def transform_metrics(converged: ArrayLike, steps: ArrayLike, z_from: ArrayLike,
                      z_to: ArrayLike, x_from: ArrayLike, x_to: ArrayLike) -> dict:
    """Summary of identity-preserving transforms.

    Args:
        converged: per-row convergence flags. # [N]
        steps: steps taken per row. # [N]
        z_from, z_to: latents before and after. # [N, D]
        x_from, x_to: images before and after (any per-row shape). # [N, ...]

    Returns:
        ``{"converged_fraction", "mean_steps", "mean_latent_distance" (L2),
        "mean_pixel_distance" (mean absolute difference per pixel), "num_rows"}``.
    """
    def arr(v):
        return np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v)

    c, s = arr(converged).astype(bool), arr(steps).astype(np.float64)
    zf, zt = arr(z_from).astype(np.float64), arr(z_to).astype(np.float64)
    xf, xt = arr(x_from).astype(np.float64), arr(x_to).astype(np.float64)
    n = c.shape[0] if c.ndim == 1 else -1
    if n < 1 or s.shape != (n,) or zf.shape != zt.shape or zf.ndim != 2 or zf.shape[0] != n \
            or xf.shape != xt.shape or xf.shape[0] != n:
        raise ValueError("transform_metrics expects converged [N], steps [N], z_from/z_to "
                         f"[N, D], x_from/x_to [N, ...] with N >= 1; got {list(c.shape)}, "
                         f"{list(s.shape)}, {list(zf.shape)}/{list(zt.shape)}, "
                         f"{list(xf.shape)}/{list(xt.shape)}")
    return {"converged_fraction": float(c.mean()), "mean_steps": float(s.mean()),
            "mean_latent_distance": float(np.linalg.norm(zt - zf, axis=1).mean()),
            "mean_pixel_distance": float(np.abs(xt - xf).reshape(n, -1).mean()),
            "num_rows": int(n)}


__all__ = [
    "CLASSIFIER_CONFIG_FILE",
    "CLASSIFIER_WEIGHTS_FILE",
    "PixelClassifier",
    "attribute_metrics",
    "evaluate_images",
    "frechet_distance",
    "load_classifier",
    "measure_attributes",
    "save_classifier",
    "train_pixel_classifier",
    "transform_metrics",
]
