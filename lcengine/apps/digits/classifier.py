# SPDX-License-Identifier: Apache-2.0
"""The digits' evaluation classifier: a small CNN that reads digit identity off pixels.

It is trained only on real training images (:func:`train_pixel_classifier`) and never used to
train critics, so it is an independent judge of generated images. Its penultimate activations
(:meth:`PixelClassifier.features`) define the feature space of the Frechet distance (FCD).
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

from lcengine.method.io import (
    atomic_write_json,
    load_tensors_checked,
    read_json_file,
    save_tensors_atomic,
)
from lcengine.method.latent_model import as_int
from lcengine.validation import check_int

from .data import NUM_DIGITS, check_images, digit_one_hot

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
    """Saves ``classifier.safetensors`` + ``classifier.json`` in ``path_dir`` (atomic writes)."""
    if not isinstance(clf, PixelClassifier):
        raise TypeError(f"clf must be a PixelClassifier, got {type(clf).__name__}")
    d = Path(path_dir)
    if d.exists() and not d.is_dir():
        raise ValueError(f"path_dir {d} exists and is not a folder")
    d.mkdir(parents=True, exist_ok=True)
    save_tensors_atomic(
        d / CLASSIFIER_WEIGHTS_FILE, clf.state_dict(), metadata={"format": _CLASSIFIER_FORMAT}
    )
    atomic_write_json(
        d / CLASSIFIER_CONFIG_FILE,
        {"format": _CLASSIFIER_FORMAT, "config": clf.config(), "history": clf.history},
    )
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
        raise ValueError(
            f"load_classifier: {cfg_path} is not an lcengine classifier config "
            f"(expected format {_CLASSIFIER_FORMAT!r} and a 'config' object)"
        )
    try:
        clf = PixelClassifier(**meta["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"load_classifier: invalid architecture in {cfg_path}: {e}") from e
    tensors = load_tensors_checked(d / CLASSIFIER_WEIGHTS_FILE, clf.state_dict(), "load_classifier")
    clf.load_state_dict(tensors)
    clf.history = list(meta.get("history", []))
    return clf.eval()


__all__ = [
    "CLASSIFIER_CONFIG_FILE",
    "CLASSIFIER_WEIGHTS_FILE",
    "PixelClassifier",
    "load_classifier",
    "save_classifier",
    "train_pixel_classifier",
]
