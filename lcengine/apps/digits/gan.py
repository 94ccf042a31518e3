# SPDX-License-Identifier: Apache-2.0
"""A decoder-only model of the digits: a small DCGAN-style generator, its training, checkpoint
and labelling function.

:class:`MnistGenerator` maps ``z ~ N(0, I)`` ``[B, D]`` to 28x28 images in ``[0, 1]``
(``linear -> [2c, 7, 7] -> deconv 14x14 -> deconv 28x28 -> sigmoid``, batch norm and ReLU
between). :func:`train_gan` trains it against :class:`MnistDiscriminator` with the
non-saturating GAN loss. It has no encoder: the method wraps it with
:meth:`LatentModel.from_decoder <lcengine.method.latent_model.LatentModel.from_decoder>` and
fits constraints on prior samples labelled by :func:`digits_label_fn` (the app's pixel
classifier for the digit, :func:`~lcengine.apps.digits.data.shape_attributes` for the shape)
through :meth:`LatentConstraints.fit_decoder_only
<lcengine.method.constraints.LatentConstraints.fit_decoder_only>`.

Its checkpoint (:func:`save_gan`, :func:`load_gan`) is a folder committed by
:func:`lcengine.method.store.commit_checkpoint` with stem ``gan``: ``gan.json`` (format,
architecture ``config``, training ``history``, ``weights_file``, ``weights_sha256``),
``gan.previous.json`` and ``gan.<sha256[:16]>.safetensors`` (the generator's weights only). The
loader checks the record's keys (widths are integers in ``[1, 65536]``) and the parameter count
before allocating the network.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable, Mapping, Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import lcengine
from lcengine.method.io import record_value, record_width
from lcengine.method.latent_model import LatentModel, as_int, to_tensor
from lcengine.method.store import (
    LoadedCheckpoint,
    build_module,
    commit_module,
    has_checkpoint,
    load_module,
)
from lcengine.validation import check_finite_tensor, check_int, check_positive_float

from .data import IMAGE_SIDE, digit_one_hot, shape_attributes

ArrayLike = Union[np.ndarray, torch.Tensor]

GAN_STEM = "gan"
_GAN_FORMAT = "lcengine.MnistGenerator/1"
_BASE = IMAGE_SIDE // 4  # 7: the generator's first feature map is [2c, 7, 7]


class MnistGenerator(nn.Module):
    """DCGAN-style generator: ``z [B, D] -> images [B, 28, 28]`` in ``(0, 1)``.

    Args:
        latent_dim: D.
        channels: c; the feature maps have 2c (7x7) and c (14x14) channels.
    """

    data_shape = (IMAGE_SIDE, IMAGE_SIDE)

    def __init__(self, latent_dim: int = 16, channels: int = 32) -> None:
        super().__init__()
        self.latent_dim = check_int("latent_dim", as_int(latent_dim), minimum=1)
        self.channels = check_int("channels", as_int(channels), minimum=1)
        c = self.channels
        self.fc = nn.Linear(self.latent_dim, 2 * c * _BASE * _BASE)
        self.bn0 = nn.BatchNorm1d(2 * c * _BASE * _BASE)
        self.up1 = nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1)  # 7 -> 14
        self.bn1 = nn.BatchNorm2d(c)
        self.up2 = nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1)  # 14 -> 28

    def config(self) -> dict:
        """Architecture hyper-parameters, enough to rebuild the module."""
        return {"latent_dim": self.latent_dim, "channels": self.channels}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images. # [B, D] -> [B, 28, 28]"""
        h = F.relu(self.bn0(self.fc(z)))  # [B, 2c*49]
        h = h.reshape(z.shape[0], 2 * self.channels, _BASE, _BASE)  # [B, 2c, 7, 7]
        h = F.relu(self.bn1(self.up1(h)))  # [B, c, 14, 14]
        return torch.sigmoid(self.up2(h))[:, 0]  # [B, 28, 28]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward` (the decoder seen by the method). # [B, D] -> [B, 28, 28]"""
        return self(z)


class MnistDiscriminator(nn.Module):
    """DCGAN-style discriminator: ``images [B, 28, 28] -> logits [B]``.

    Args:
        channels: c; the feature maps have c (14x14) and 2c (7x7) channels.
    """

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        c = check_int("channels", as_int(channels), minimum=1)
        self.conv1 = nn.Conv2d(1, c, 4, stride=2, padding=1)  # 28 -> 14
        self.conv2 = nn.Conv2d(c, 2 * c, 4, stride=2, padding=1)  # 14 -> 7
        self.out = nn.Linear(2 * c * _BASE * _BASE, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Real-vs-generated logits. # [B, 28, 28] -> [B]"""
        h = F.leaky_relu(self.conv1(x[:, None]), 0.2)  # [B, c, 14, 14]
        h = F.leaky_relu(self.conv2(h), 0.2)  # [B, 2c, 7, 7]
        return self.out(h.flatten(1))[:, 0]  # [B]


def train_gan(
    images: ArrayLike,
    *,
    latent_dim: int = 16,
    channels: int = 32,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 2e-4,
    seed: int = 0,
    progress: bool = True,
) -> MnistGenerator:
    """Trains a generator on 28x28 images in [0, 1] (non-saturating GAN loss, Adam betas
    (0.5, 0.999), one discriminator and one generator update per batch, all seeded).

    Latent noise comes from :func:`lcengine.standard_normal` keyed by ``seed`` at a fresh offset
    each step. The per-epoch history ``[{"epoch", "loss_d", "loss_g", "seconds"}]`` is attached as
    ``generator.history``.

    Args:
        images: training images in [0, 1]. # [N, 28, 28]
        latent_dim: D.
        channels: c of both networks.
        epochs: passes over the data.
        batch_size: minibatch size.
        lr: Adam learning rate of both networks.
        seed: seeds the initialization, the shuffling and the latent noise.
        progress: a tqdm bar over the epochs.

    Returns:
        The trained generator in eval mode.
    """
    from tqdm.auto import tqdm

    x = to_tensor(images, "images", torch.device("cpu"), torch.float32)
    if x.ndim != 3 or tuple(x.shape[1:]) != (IMAGE_SIDE, IMAGE_SIDE) or x.shape[0] < 2:
        raise ValueError(f"images must have shape [N >= 2, 28, 28], got {list(x.shape)}")
    check_finite_tensor("images", x)
    if x.min() < 0 or x.max() > 1:
        raise ValueError("images must have values in [0, 1]")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("seed", seed)):
        check_int(name, as_int(v), minimum=1 if name != "seed" else 0)
    check_positive_float("lr", lr)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = MnistGenerator(latent_dim=latent_dim, channels=channels)
        disc = MnistDiscriminator(channels=channels)
    order = torch.Generator().manual_seed(seed)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
    n, d = x.shape[0], gen.latent_dim
    history: list[dict] = []
    step = 0
    gen.train()
    bar = tqdm(range(epochs), desc="train GAN", disable=None if progress else True)
    for epoch in bar:
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=order)
        sum_d = sum_g = 0.0
        batches = 0
        for i in range(0, n - 1, batch_size):
            real = x[perm[i : i + batch_size]]  # [b, 28, 28]
            b = real.shape[0]
            if b < 2:  # batch norm needs two rows
                continue
            z = lcengine.standard_normal((b, d), seed=seed, offset=step * batch_size * d)
            fake = gen(z)  # [b, 28, 28]
            loss_d = F.softplus(-disc(real)).mean() + F.softplus(disc(fake.detach())).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            loss_g = F.softplus(-disc(fake)).mean()  # non-saturating: -log D(G(z))
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            step += 1
            batches += 1
            sum_d += float(loss_d.detach())
            sum_g += float(loss_g.detach())
        if not (math.isfinite(sum_d) and math.isfinite(sum_g)):
            raise FloatingPointError(f"GAN training diverged at epoch {epoch}; lower lr")
        history.append(
            {
                "epoch": epoch,
                "loss_d": sum_d / max(batches, 1),
                "loss_g": sum_g / max(batches, 1),
                "seconds": time.perf_counter() - t0,
            }
        )
        bar.set_postfix(
            loss_d=f"{history[-1]['loss_d']:.3f}", loss_g=f"{history[-1]['loss_g']:.3f}"
        )
    gen.eval()
    gen.history = history
    return gen


def gan_latent_model(generator: MnistGenerator) -> LatentModel:
    """The generator as a decoder-only :class:`~lcengine.method.latent_model.LatentModel`."""
    if not isinstance(generator, MnistGenerator):
        raise TypeError(f"generator must be a MnistGenerator, got {type(generator).__name__}")
    return LatentModel.from_decoder(generator)


def digits_label_fn(
    classifier: Callable, shape_thresholds: Mapping[str, float]
) -> Callable[[np.ndarray], np.ndarray]:
    """A labelling function of decoded digits with the app's attribute columns
    (``ATTRIBUTE_NAMES``: ``digit_0`` .. ``digit_9`` from the pixel classifier's prediction,
    then the shape attributes measured with ``shape_thresholds``).

    Args:
        classifier: a :class:`~lcengine.apps.digits.classifier.PixelClassifier` (anything with
            ``predict(images [N, 28, 28]) -> digits [N]``).
        shape_thresholds: the training split's thresholds (``MnistAttributes.shape_thresholds``).

    Returns:
        ``label_fn(images [N, 28, 28] in [0, 1]) -> [N, 15] int8``.
    """
    if not callable(getattr(classifier, "predict", None)):
        raise TypeError(
            f"classifier must have predict(images) -> digits, got {type(classifier).__name__}"
        )
    thresholds = dict(shape_thresholds)

    def label_fn(images: np.ndarray) -> np.ndarray:
        x = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)  # [N, 28, 28]
        digits = digit_one_hot(classifier.predict(x))  # [N, 10]
        return np.concatenate([digits, shape_attributes(x, thresholds)], axis=1).astype(np.int8)

    return label_fn


def save_gan(generator: MnistGenerator, path_dir: Union[str, os.PathLike]) -> Path:
    """Commits a :class:`MnistGenerator` into the folder ``path_dir`` (see the module
    docstring). Returns the folder."""
    if not isinstance(generator, MnistGenerator):
        raise TypeError(f"generator must be a MnistGenerator, got {type(generator).__name__}")
    return commit_module(path_dir, GAN_STEM, generator, _GAN_FORMAT, what="save_gan")


def has_gan_checkpoint(path_dir: Union[str, os.PathLike]) -> bool:
    """The folder holds a generator record (``gan.json`` or ``gan.previous.json``)."""
    return has_checkpoint(path_dir, GAN_STEM)


def _gan_widths(record: dict, path: Path, what: str) -> dict:
    return {
        k: record_width(record_value(record, f"config.{k}", path, what), k, path, what)
        for k in ("latent_dim", "channels")
    }


def _build_gan(ck: LoadedCheckpoint) -> MnistGenerator:
    return build_module(
        ck,
        record_format=_GAN_FORMAT,
        kind="generator",
        what="load_gan",
        parse=_gan_widths,
        make=MnistGenerator,
    )


def load_gan(
    path_dir: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu"
) -> MnistGenerator:
    """Loads a :class:`MnistGenerator` saved by :func:`save_gan` (checksum, architecture,
    tensor names and shapes, finiteness checked; falls back to ``gan.previous.json``), in eval
    mode.

    Raises:
        ValueError: nothing loadable; the message names the file.
    """
    return load_module(path_dir, GAN_STEM, "load_gan", _build_gan, device)


__all__ = [
    "GAN_STEM",
    "MnistDiscriminator",
    "MnistGenerator",
    "digits_label_fn",
    "gan_latent_model",
    "has_gan_checkpoint",
    "load_gan",
    "save_gan",
    "train_gan",
]
