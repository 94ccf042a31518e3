# SPDX-License-Identifier: Apache-2.0
"""A conditional baseline of the digits: a conditional DCGAN-style generator, its training,
generation and checkpoint.

It answers "why not retrain a conditional model?" with a GAN, next to the conditional VAE of
:mod:`lcengine.apps.digits.cvae`: :func:`train_cgan` trains a generator of ``p(x | y)`` for the
15 attribute columns ``y`` (``ATTRIBUTE_NAMES``: ``digit_0`` .. ``digit_9`` one-hot, then
``thick, slant_right, wide, tall, large_ink``) on the same training split as everything else.

:class:`ConditionalGenerator` embeds ``y`` with a linear layer (``15 -> E``), concatenates the
embedding to the noise ``z ~ N(0, I)`` ``[B, D]`` and runs the trunk of
:class:`~lcengine.apps.digits.gan.MnistGenerator` on ``[z, e]`` (``linear -> [2c, 7, 7] ->
deconv 14x14 -> deconv 28x28 -> sigmoid``, batch norm and ReLU between).
:class:`ConditionalDiscriminator` is a projection discriminator (Miyato and Koyama, 2018): the
unconditional discriminator's logit plus the inner product of its flattened features with a
linear embedding of ``y`` (a sum over the active attributes of one learned direction each).
Concatenating an embedding before the last linear layer instead would only add a term of ``y``
alone to the logit, which cannot tell whether an image matches its attributes. Training uses
the non-saturating GAN loss with Adam betas (0.5, 0.999), as
:func:`~lcengine.apps.digits.gan.train_gan`; the generated images of a batch are asked for the
attribute rows of its real images.
:meth:`ConditionalGenerator.generate` decodes noise drawn with :func:`lcengine.standard_normal`
for requested attribute rows.

Its checkpoint (:func:`save_cgan`, :func:`load_cgan`) is a folder committed by
:func:`lcengine.method.store.commit_checkpoint` with stem ``cgan``: ``cgan.json`` (format,
architecture ``config``, training ``history``, ``weights_file``, ``weights_sha256``),
``cgan.previous.json`` and ``cgan.<sha256[:16]>.safetensors`` (the generator's weights only).
The loader checks the record's keys (widths are integers in ``[1, 65536]``) and the parameter
count before allocating the network.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import lcengine
from lcengine.method.io import record_value, record_width
from lcengine.method.latent_model import as_int
from lcengine.method.store import (
    LoadedCheckpoint,
    build_module,
    commit_module,
    has_checkpoint,
    load_module,
)
from lcengine.validation import check_int

from .cvae import NUM_ATTRIBUTES, check_training_pairs, check_training_settings, generate_images
from .data import IMAGE_SIDE

ArrayLike = Union[np.ndarray, torch.Tensor]

CGAN_STEM = "cgan"
_CGAN_FORMAT = "lcengine.ConditionalGenerator/1"
_BASE = IMAGE_SIDE // 4  # 7: the generator's first feature map is [2c, 7, 7]

# The demo's settings: 14 epochs of 32-image batches, Adam lr 1e-3 for both networks. Measured on
# the 4,000 training digits on ONE thread of the 2-core machine (idle): 84 s of training; the
# full pixel classifier (4,000 x 8 epochs, 97.7% on held-out digits) reads the requested digit on
# 97.6% of 500 samples for the held-out attribute rows (lr 2e-4, 12 epochs: 71%; lr 4e-4, 14
# epochs: 84%; lr 5e-4, 14 epochs: 90%). Shape attributes: 86-96% agreement.
FULL: dict = {
    "latent_dim": 16,
    "channels": 32,
    "embed_dim": 16,
    "epochs": 14,
    "batch_size": 32,
    "lr": 1e-3,
}
# Smoke tests: under a second on a few hundred images.
FAST: dict = {
    "latent_dim": 4,
    "channels": 4,
    "embed_dim": 4,
    "epochs": 1,
    "batch_size": 64,
    "lr": 2e-4,
}


class ConditionalGenerator(nn.Module):
    """Conditional DCGAN-style generator: ``z [B, D], y [B, 15] -> images [B, 28, 28]`` in
    ``(0, 1)``.

    Args:
        latent_dim: D.
        channels: c; the feature maps have 2c (7x7) and c (14x14) channels.
        embed_dim: E, the width of the attributes' linear embedding.
    """

    data_shape = (IMAGE_SIDE, IMAGE_SIDE)

    def __init__(self, latent_dim: int = 16, channels: int = 32, embed_dim: int = 16) -> None:
        super().__init__()
        self.latent_dim = check_int("latent_dim", as_int(latent_dim), minimum=1)
        self.channels = check_int("channels", as_int(channels), minimum=1)
        self.embed_dim = check_int("embed_dim", as_int(embed_dim), minimum=1)
        c = self.channels
        self.embed = nn.Linear(NUM_ATTRIBUTES, self.embed_dim)
        self.fc = nn.Linear(self.latent_dim + self.embed_dim, 2 * c * _BASE * _BASE)
        self.bn0 = nn.BatchNorm1d(2 * c * _BASE * _BASE)
        self.up1 = nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1)  # 7 -> 14
        self.bn1 = nn.BatchNorm2d(c)
        self.up2 = nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1)  # 14 -> 28

    def config(self) -> dict:
        """Architecture hyper-parameters, enough to rebuild the module."""
        return {
            "latent_dim": self.latent_dim,
            "channels": self.channels,
            "embed_dim": self.embed_dim,
        }

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images. # [B, D], [B, 15] -> [B, 28, 28]"""
        e = self.embed(y)  # [B, E]
        h = F.relu(self.bn0(self.fc(torch.cat([z, e], dim=1))))  # [B, 2c*49]
        h = h.reshape(z.shape[0], 2 * self.channels, _BASE, _BASE)  # [B, 2c, 7, 7]
        h = F.relu(self.bn1(self.up1(h)))  # [B, c, 14, 14]
        return torch.sigmoid(self.up2(h))[:, 0]  # [B, 28, 28]

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward`. # [B, D], [B, 15] -> [B, 28, 28]"""
        return self(z, y)

    def generate(self, attributes, seed: int = 0) -> np.ndarray:
        """Images for requested attribute rows: noise ``z ~ N(0, I)``
        (:func:`lcengine.standard_normal` keyed by ``seed``) decoded under each row in eval mode
        (batch norm with its running statistics), without gradients, at most
        :data:`~lcengine.apps.digits.cvae.GENERATE_BATCH` rows at once; the same seed gives the
        same images.

        Args:
            attributes: 0/1 rows, columns ``ATTRIBUTE_NAMES`` (bool, integer or float). # [N, 15]
            seed: key of the noise, in [0, 2**63).

        Returns:
            float32 images in [0, 1]. # [N, 28, 28]

        Raises:
            ValueError: ``attributes`` not ``[N, 15]`` or not 0/1.
        """
        return generate_images(self, self.decode, self.latent_dim, attributes, seed)


class ConditionalDiscriminator(nn.Module):
    """Projection discriminator: ``images [B, 28, 28], y [B, 15] -> logits [B]``,
    ``out(phi(x)) + <V y, phi(x)>`` with ``phi(x)`` the flattened conv features.

    Args:
        channels: c; the feature maps have c (14x14) and 2c (7x7) channels.
    """

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        c = check_int("channels", as_int(channels), minimum=1)
        features = 2 * c * _BASE * _BASE
        self.conv1 = nn.Conv2d(1, c, 4, stride=2, padding=1)  # 28 -> 14
        self.conv2 = nn.Conv2d(c, 2 * c, 4, stride=2, padding=1)  # 14 -> 7
        self.out = nn.Linear(features, 1)
        self.embed = nn.Linear(NUM_ATTRIBUTES, features, bias=False)  # V

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Real-vs-generated logits for images and the attributes they should have.
        # [B, 28, 28], [B, 15] -> [B]"""
        h = F.leaky_relu(self.conv1(x[:, None]), 0.2)  # [B, c, 14, 14]
        h = F.leaky_relu(self.conv2(h), 0.2).flatten(1)  # [B, 2c*49]
        return self.out(h)[:, 0] + (self.embed(y) * h).sum(1)  # [B]


def train_cgan(
    images: ArrayLike,
    attributes,
    *,
    latent_dim: int = 16,
    channels: int = 32,
    embed_dim: int = 16,
    epochs: int = FULL["epochs"],
    batch_size: int = 32,
    lr: float = 2e-4,
    seed: int = 0,
    progress: bool = True,
) -> ConditionalGenerator:
    """Trains a conditional generator on images and their attribute rows (non-saturating GAN
    loss, Adam betas (0.5, 0.999), one discriminator and one generator update per batch, all
    seeded).

    The generated half of each step is asked for the attribute rows of the step's real images.
    Latent noise comes from :func:`lcengine.standard_normal` keyed by ``seed`` at a fresh offset
    each step. The per-epoch history ``[{"epoch", "loss_d", "loss_g", "seconds"}]`` is attached as
    ``generator.history``. Settings: :data:`FULL` (the demo's, with its measured time) and
    :data:`FAST` (smoke tests).

    Args:
        images: training images in [0, 1]. # [N, 28, 28]
        attributes: their 0/1 attribute rows, columns ``ATTRIBUTE_NAMES``. # [N, 15]
        latent_dim: D.
        channels: c of both networks.
        embed_dim: E, the generator's attribute embedding width.
        epochs: passes over the data.
        batch_size: minibatch size.
        lr: Adam learning rate of both networks.
        seed: seeds the initialization, the shuffling and the latent noise.
        progress: a tqdm bar over the epochs (off automatically when not a TTY).

    Returns:
        The trained generator in eval mode.
    """
    from tqdm.auto import tqdm

    x, y = check_training_pairs(images, attributes)  # [N, 28, 28], [N, 15]
    check_training_settings(epochs, batch_size, seed, lr)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = ConditionalGenerator(latent_dim=latent_dim, channels=channels, embed_dim=embed_dim)
        disc = ConditionalDiscriminator(channels=channels)
    order = torch.Generator().manual_seed(seed)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
    n, d = x.shape[0], gen.latent_dim
    history: list[dict] = []
    step = 0
    gen.train()
    bar = tqdm(range(epochs), desc="train CGAN", disable=None if progress else True)
    for epoch in bar:
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=order)
        sum_d = sum_g = 0.0
        batches = 0
        for i in range(0, n - 1, batch_size):
            idx = perm[i : i + batch_size]
            real, yb = x[idx], y[idx]  # [b, 28, 28], [b, 15]
            b = real.shape[0]
            if b < 2:  # batch norm needs two rows
                continue
            z = lcengine.standard_normal((b, d), seed=seed, offset=step * batch_size * d)
            fake = gen(z, yb)  # [b, 28, 28]
            loss_d = F.softplus(-disc(real, yb)).mean() + F.softplus(disc(fake.detach(), yb)).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            loss_g = F.softplus(-disc(fake, yb)).mean()  # non-saturating: -log D(G(z, y), y)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            step += 1
            batches += 1
            sum_d += float(loss_d.detach())
            sum_g += float(loss_g.detach())
        if not (math.isfinite(sum_d) and math.isfinite(sum_g)):
            raise FloatingPointError(f"CGAN training diverged at epoch {epoch}; lower lr")
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


def save_cgan(generator: ConditionalGenerator, path_dir: Union[str, os.PathLike]) -> Path:
    """Commits a :class:`ConditionalGenerator` into the folder ``path_dir`` (see the module
    docstring). Returns the folder."""
    if not isinstance(generator, ConditionalGenerator):
        raise TypeError(f"generator must be a ConditionalGenerator, got {type(generator).__name__}")
    return commit_module(path_dir, CGAN_STEM, generator, _CGAN_FORMAT, what="save_cgan")


def has_cgan_checkpoint(path_dir: Union[str, os.PathLike]) -> bool:
    """The folder holds a conditional generator record (``cgan.json`` or
    ``cgan.previous.json``)."""
    return has_checkpoint(path_dir, CGAN_STEM)


def _cgan_widths(record: dict, path: Path, what: str) -> dict:
    return {
        k: record_width(record_value(record, f"config.{k}", path, what), f"config.{k}", path, what)
        for k in ("latent_dim", "channels", "embed_dim")
    }


def _build_cgan(ck: LoadedCheckpoint) -> ConditionalGenerator:
    return build_module(
        ck,
        record_format=_CGAN_FORMAT,
        kind="conditional generator",
        what="load_cgan",
        parse=_cgan_widths,
        make=ConditionalGenerator,
    )


def load_cgan(
    path_dir: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu"
) -> ConditionalGenerator:
    """Loads a :class:`ConditionalGenerator` saved by :func:`save_cgan` (checksum,
    architecture, tensor names and shapes, finiteness checked; falls back to
    ``cgan.previous.json``), in eval mode.

    Raises:
        ValueError: nothing loadable; the message names the file.
    """
    return load_module(path_dir, CGAN_STEM, "load_cgan", _build_cgan, device)


__all__ = [
    "CGAN_STEM",
    "FAST",
    "FULL",
    "ConditionalDiscriminator",
    "ConditionalGenerator",
    "has_cgan_checkpoint",
    "load_cgan",
    "save_cgan",
    "train_cgan",
]
