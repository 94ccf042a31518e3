# SPDX-License-Identifier: Apache-2.0
"""The digits' evaluation classifier: a small CNN that reads digit identity off pixels.

It is trained only on real training images (:func:`train_pixel_classifier`) and never used to
train critics, so it is an independent judge of generated images. Its penultimate activations
(:meth:`PixelClassifier.features`) define the feature space of the Frechet distance (FCD).

Its checkpoint (:func:`save_classifier`, :func:`load_classifier`) is a folder committed by
:func:`lcengine.method.store.commit_checkpoint` with stem ``classifier``: ``classifier.json``
(format, architecture ``config``, training ``history``, ``weights_file``, ``weights_sha256``),
``classifier.previous.json`` and ``classifier.<sha256[:16]>.safetensors``. The loader verifies
the checksum, checks every record key it reads (widths are integers in ``[1, 65536]``) before
allocating the network, and falls back to ``classifier.previous.json`` when the current record
cannot be loaded. A record without ``weights_file`` names ``classifier.safetensors``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lcengine.method.io import check_tensors_match, record_value, record_width, record_widths
from lcengine.method.latent_model import as_int
from lcengine.method.store import (
    CheckpointFiles,
    LoadedCheckpoint,
    commit_module,
    load_checkpoint,
)
from lcengine.validation import check_int

from .data import NUM_DIGITS, check_images, digit_one_hot

ArrayLike = Union[np.ndarray, torch.Tensor]

CLASSIFIER_STEM = "classifier"
CLASSIFIER_CONFIG_FILE = "classifier.json"  # the current record
CLASSIFIER_WEIGHTS_FILE = "classifier.safetensors"  # weights of a record naming none
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
            raise ValueError(
                f"channels and feature_dim must be positive, got {channels!r}, {feature_dim!r}"
            )
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
            outs = [fn(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
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
        return (
            self._batched(images, self._trunk, batch_size)
            .numpy()
            .astype(np.float64)
            .reshape(-1, self.feature_dim)
        )

    def save(self, path_dir: Union[str, os.PathLike]) -> Path:
        """Same as :func:`save_classifier`."""
        return save_classifier(self, path_dir)

    @classmethod
    def load(cls, path_dir: Union[str, os.PathLike]) -> "PixelClassifier":
        """Same as :func:`load_classifier`."""
        return load_classifier(path_dir)


def train_pixel_classifier(
    images: ArrayLike,
    digits: ArrayLike,
    *,
    seed: int = 0,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 2e-3,
    channels: Sequence[int] = (16, 32),
    feature_dim: int = 128,
    progress: bool = True,
) -> PixelClassifier:
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
        check_int(name, as_int(v), minimum=1)
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
            idx = perm[i : i + batch_size]
            logits = clf(x[idx])  # [b, 10]
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * idx.numel()
            correct += int((logits.argmax(1) == y[idx]).sum())
        if not math.isfinite(tot):
            raise FloatingPointError(f"classifier training diverged at epoch {epoch}; lower lr")
        clf.history.append(
            {
                "epoch": epoch,
                "loss": tot / n,
                "train_accuracy": correct / n,
                "seconds": time.perf_counter() - t0,
            }
        )
        bar.set_postfix(loss=f"{tot / n:.3f}", acc=f"{correct / n:.3f}")
    return clf.eval()


def save_classifier(clf: PixelClassifier, path_dir: Union[str, os.PathLike]) -> Path:
    """Commits the classifier into the folder ``path_dir`` (see the module docstring): new
    weights file first, then one atomic switch of ``classifier.json``."""
    if not isinstance(clf, PixelClassifier):
        raise TypeError(f"clf must be a PixelClassifier, got {type(clf).__name__}")
    return commit_module(
        path_dir,
        CLASSIFIER_STEM,
        clf,
        _CLASSIFIER_FORMAT,
        config=clf.config(),
        history=clf.history,
        what="save_classifier",
    )


def has_classifier_checkpoint(path_dir: Union[str, os.PathLike]) -> bool:
    """The folder holds a classifier record (``classifier.json`` or its previous one)."""
    return CheckpointFiles(Path(path_dir), CLASSIFIER_STEM).exists()


def classifier_parameter_count(channels: Sequence[int], feature_dim: int) -> int:
    """Number of parameters of ``PixelClassifier(channels, feature_dim)``, without building it."""
    c1, c2 = channels
    return (
        (9 * c1 + c1)
        + (9 * c1 * c2 + c2)
        + (c2 * 7 * 7 * feature_dim + feature_dim)
        + (feature_dim * NUM_DIGITS + NUM_DIGITS)
    )


def _build_classifier(ck: LoadedCheckpoint) -> PixelClassifier:
    what, meta, cfg_path, w_path = "load_classifier", ck.record, ck.record_path, ck.weights_path
    if meta.get("format") != _CLASSIFIER_FORMAT:
        raise ValueError(
            f"load_classifier: {cfg_path} is not an lcengine classifier record (key 'format' is "
            f"{meta.get('format')!r}, expected {_CLASSIFIER_FORMAT!r})"
        )
    config = record_value(meta, "config", cfg_path, what)
    if not isinstance(config, dict):
        raise ValueError(f"load_classifier: {cfg_path} key 'config' must be an object")
    unknown = sorted(set(config) - {"channels", "feature_dim"})
    if unknown:
        raise ValueError(f"load_classifier: {cfg_path} key 'config' has unknown keys {unknown}")
    channels = record_widths(
        record_value(meta, "config.channels", cfg_path, what),
        "config.channels",
        cfg_path,
        what,
        min_len=2,
        max_len=2,
    )
    feature_dim = record_width(
        record_value(meta, "config.feature_dim", cfg_path, what),
        "config.feature_dim",
        cfg_path,
        what,
    )
    history = meta.get("history", [])
    if not isinstance(history, list):
        raise ValueError(f"load_classifier: {cfg_path} key 'history' must be a list")
    held = sum(t.numel() for t in ck.tensors.values())
    needed = classifier_parameter_count(channels, feature_dim)
    if held != needed:  # checked before the network is allocated
        raise ValueError(
            f"load_classifier: {w_path} does not match the configuration: it holds {held} "
            f"parameters, the architecture in {cfg_path} has {needed}"
        )
    clf = PixelClassifier(channels=channels, feature_dim=feature_dim)
    check_tensors_match(ck.tensors, clf.state_dict(), w_path, what)
    clf.load_state_dict(ck.tensors)
    clf.history = list(history)
    return clf.eval()


def load_classifier(path_dir: Union[str, os.PathLike]) -> PixelClassifier:
    """Loads a classifier saved by :func:`save_classifier`, validating the record and the
    weights (checksum, architecture, tensor names and shapes, finiteness).

    Falls back to ``classifier.previous.json`` (with a warning naming the file that failed and
    why) when ``classifier.json`` or its weights are missing, corrupted or mismatched.

    Raises:
        ValueError: nothing loadable; the message names the file (and the record key at fault).
    """
    d = Path(path_dir)
    if d.exists() and not d.is_dir():
        raise ValueError(f"load_classifier: {d} is not a folder")
    return load_checkpoint(d, CLASSIFIER_STEM, "load_classifier", _build_classifier)


__all__ = [
    "CLASSIFIER_CONFIG_FILE",
    "CLASSIFIER_STEM",
    "CLASSIFIER_WEIGHTS_FILE",
    "PixelClassifier",
    "classifier_parameter_count",
    "has_classifier_checkpoint",
    "load_classifier",
    "save_classifier",
    "train_pixel_classifier",
]
