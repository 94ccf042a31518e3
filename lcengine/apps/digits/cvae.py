# SPDX-License-Identifier: Apache-2.0
"""A conditional baseline of the digits: an MLP conditional VAE, its training, generation and
checkpoint.

It answers "why not retrain a conditional model?": instead of constraining the latent space of
an unconditional model after the fact, :func:`train_cvae` trains a model of ``p(x | y)`` for the
15 attribute columns ``y`` (``ATTRIBUTE_NAMES``: ``digit_0`` .. ``digit_9`` one-hot, then
``thick, slant_right, wide, tall, large_ink``) on the same training split as everything else.

:class:`ConditionalVAE` is an MLP: the encoder sees ``[x, y]`` (``784 + 15 -> hidden -> 2D``),
the decoder ``[z, y]`` (``D + 15 -> hidden reversed -> 784`` logits). The reconstruction term is
Bernoulli (binary cross-entropy of the pixel intensities in [0, 1] against the decoder's
logits, summed over pixels), not the unconditional VAE's Gaussian of fixed small scale: with it
the prior samples ``z ~ N(0, I)`` decoded under a requested ``y`` are the model's answer, so
they must be good, and the Bernoulli term weighs the KL term enough for that.
:meth:`ConditionalVAE.generate` decodes prior samples drawn with
:func:`lcengine.standard_normal` for requested attribute rows.

Its checkpoint (:func:`save_cvae`, :func:`load_cvae`) is a folder committed by
:func:`lcengine.method.store.commit_checkpoint` with stem ``cvae``: ``cvae.json`` (format,
architecture ``config``, training ``history``, ``weights_file``, ``weights_sha256``),
``cvae.previous.json`` and ``cvae.<sha256[:16]>.safetensors``. The loader checks the record's
keys (widths are integers in ``[1, 65536]``) and the parameter count before allocating the
network.

The attribute and image checks and the batched generation loop here are shared with
:mod:`lcengine.apps.digits.cgan` (:func:`check_attribute_rows`, :func:`check_training_pairs`,
:func:`generate_images`).
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

import lcengine
from lcengine.method.io import record_value, record_width, record_widths
from lcengine.method.latent_model import as_int
from lcengine.method.store import (
    LoadedCheckpoint,
    build_module,
    commit_module,
    has_checkpoint,
    load_module,
)
from lcengine.validation import check_int, check_positive_float

from .data import ATTRIBUTE_NAMES, IMAGE_SIDE, check_images

ArrayLike = Union[np.ndarray, torch.Tensor]

CVAE_STEM = "cvae"
_CVAE_FORMAT = "lcengine.ConditionalVAE/1"
NUM_ATTRIBUTES = len(ATTRIBUTE_NAMES)  # 15 conditioning columns
GENERATE_BATCH = 1024  # rows decoded at once by generate()
_N_PIX = IMAGE_SIDE * IMAGE_SIDE

# The demo's settings: 60 epochs of 128-image batches through the 512-512 MLPs, Adam lr 2e-3.
# Measured on the 4,000 training digits on ONE thread of the 2-core machine (idle): 40 s of
# training; the full pixel classifier (4,000 x 8 epochs, 97.7% on held-out digits) reads the
# requested digit on 95.6% of 500 samples for the held-out attribute rows (40 epochs at lr 1e-3:
# 38 s, 85%; 60 at 1e-3: 57 s on a loaded machine, 88%). Shape attributes: 86-95% agreement.
FULL: dict = {"latent_dim": 16, "hidden": (512, 512), "epochs": 60, "batch_size": 128, "lr": 2e-3}
# Smoke tests: well under a second on a few hundred images.
FAST: dict = {"latent_dim": 8, "hidden": (64,), "epochs": 2, "batch_size": 64, "lr": 1e-3}


# --------------------------------------------------------------------------------------------
# Checks and generation shared with the conditional GAN
# --------------------------------------------------------------------------------------------


def check_attribute_rows(attributes, name: str = "attributes") -> torch.Tensor:
    """0/1 attribute rows (bool, integer or float numpy array, tensor or nested list) as a
    float32 CPU tensor. # [N, 15]

    Raises:
        TypeError: not numbers.
        ValueError: not ``[N >= 1, 15]`` or a value other than 0 and 1 (naming ``name``).
    """
    if isinstance(attributes, torch.Tensor):
        a = attributes.detach().cpu().numpy()
    elif isinstance(attributes, np.ndarray):
        a = attributes
    else:
        try:
            a = np.asarray(attributes)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name} must be a [N, {NUM_ATTRIBUTES}] array of 0/1: {e}") from e
    if not (
        a.dtype == np.bool_
        or np.issubdtype(a.dtype, np.integer)
        or np.issubdtype(a.dtype, np.floating)
    ):
        raise TypeError(f"{name} must hold 0/1 numbers or booleans, got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[1] != NUM_ATTRIBUTES or a.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape [N >= 1, {NUM_ATTRIBUTES}] (columns "
            f"{', '.join(ATTRIBUTE_NAMES)}), got {list(a.shape)}"
        )
    if not np.isin(a, (0, 1)).all():  # NaN is not in {0, 1} either
        bad = a[~np.isin(a, (0, 1))].ravel()[0]
        raise ValueError(f"{name} must hold only 0/1 values, got {bad!r}")
    return torch.from_numpy(a.astype(np.float32))  # [N, 15]


def check_training_pairs(images: ArrayLike, attributes) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked training images in [0, 1] and their 0/1 attribute rows, float32 CPU tensors.

    Returns:
        ``(x [N, 28, 28], y [N, 15])``.

    Raises:
        ValueError: ``images`` not ``[N >= 2, 28, 28]``, not finite or outside [0, 1];
            ``attributes`` not ``[N, 15]`` 0/1 rows for the same N.
    """
    x_np = check_images(images, "images")  # float64 [N, 28, 28]
    if x_np.shape[0] < 2:
        raise ValueError(f"images must have shape [N >= 2, 28, 28], got {list(x_np.shape)}")
    x = torch.from_numpy(np.clip(x_np, 0.0, 1.0).astype(np.float32))  # [N, 28, 28]
    y = check_attribute_rows(attributes, "attributes")  # [N, 15]
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"attributes has {y.shape[0]} rows for {x.shape[0]} images")
    return x, y


def generate_images(
    model: nn.Module,
    decode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    latent_dim: int,
    attributes,
    seed: int,
) -> np.ndarray:
    """Decodes prior samples for requested attribute rows, in eval mode and without gradients.

    Row ``i`` decodes ``z_i`` = the Philox stream of ``seed`` at positions ``[i D, (i + 1) D)``
    (:func:`lcengine.standard_normal`), so the result does not depend on the batching (at most
    :data:`GENERATE_BATCH` rows at once).

    Args:
        model: the module (put in eval mode for the call, its mode restored afterwards).
        decode: ``decode(z [B, D], y [B, 15]) -> images [B, 28, 28]`` in [0, 1].
        latent_dim: D.
        attributes: 0/1 rows. # [N, 15]
        seed: key of the noise stream, in [0, 2**63).

    Returns:
        float32 images in [0, 1]. # [N, 28, 28]
    """
    y_all = check_attribute_rows(attributes, "attributes")  # [N, 15]
    seed = check_int("seed", as_int(seed), minimum=0, maximum=2**63 - 1)
    device = next(model.parameters()).device
    n, d = y_all.shape[0], latent_dim
    out = np.empty((n, IMAGE_SIDE, IMAGE_SIDE), np.float32)  # [N, 28, 28]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, n, GENERATE_BATCH):
                y = y_all[i : i + GENERATE_BATCH].to(device)  # [b, 15]
                z = lcengine.standard_normal(
                    (y.shape[0], d), seed=seed, offset=i * d, device=device
                )
                x = decode(z, y)  # [b, 28, 28]
                out[i : i + y.shape[0]] = x.clamp(0.0, 1.0).float().cpu().numpy()
    finally:
        model.train(was_training)
    return out


def check_training_settings(epochs, batch_size, seed, lr) -> None:
    """Positive ints ``epochs`` and ``batch_size``, ``seed`` in [0, 2**63), ``lr > 0`` (errors
    name the argument)."""
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        check_int(name, as_int(v), minimum=1)
    check_int("seed", as_int(seed), minimum=0, maximum=2**63 - 1)
    check_positive_float("lr", lr)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ConditionalVAE(nn.Module):
    """MLP conditional VAE: ``[x, y] (784 + 15) -> hidden -> 2D`` and
    ``[z, y] (D + 15) -> hidden reversed -> 784`` (Bernoulli logits).

    Args:
        latent_dim: D.
        hidden: widths of the hidden ReLU layers (the decoder mirrors them).
    """

    data_shape = (IMAGE_SIDE, IMAGE_SIDE)

    def __init__(self, latent_dim: int = 16, hidden: Sequence[int] = (512, 512)) -> None:
        super().__init__()
        self.latent_dim = check_int("latent_dim", as_int(latent_dim), minimum=1)
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, (list, tuple)) or not hidden:
            raise ValueError(f"hidden must be a non-empty list of positive widths, got {hidden!r}")
        self.hidden = tuple(
            check_int(f"hidden[{i}]", as_int(h), minimum=1) for i, h in enumerate(hidden)
        )
        a = NUM_ATTRIBUTES
        self.encoder = _mlp((_N_PIX + a,) + self.hidden + (2 * self.latent_dim,))
        self.decoder = _mlp((self.latent_dim + a,) + self.hidden[::-1] + (_N_PIX,))

    def config(self) -> dict:
        """Architecture hyper-parameters, enough to rebuild the module."""
        return {"latent_dim": self.latent_dim, "hidden": list(self.hidden)}

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, 28, 28], y [B, 15] -> (mu [B, D], logvar [B, D])``."""
        h = self.encoder(torch.cat([x.reshape(x.shape[0], -1), y], dim=1))  # [B, 2D]
        mu, logvar = h.chunk(2, dim=1)  # [B, D] each
        return mu, logvar

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid decoder output. # [B, D], [B, 15] -> [B, 28, 28]"""
        h = self.decoder(torch.cat([z, y], dim=1))  # [B, 784]
        return h.reshape(z.shape[0], IMAGE_SIDE, IMAGE_SIDE)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Decoder mean in [0, 1]. # [B, D], [B, 15] -> [B, 28, 28]"""
        return torch.sigmoid(self.decode_logits(z, y))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Reconstruction from the posterior mean. # [B, 28, 28], [B, 15] -> [B, 28, 28]"""
        return self.decode(self.encode(x, y)[0], y)

    def generate(self, attributes, seed: int = 0) -> np.ndarray:
        """Images for requested attribute rows: prior samples ``z ~ N(0, I)``
        (:func:`lcengine.standard_normal` keyed by ``seed``) decoded under each row, without
        gradients, at most :data:`GENERATE_BATCH` rows at once; the same seed gives the same
        images.

        Args:
            attributes: 0/1 rows, columns ``ATTRIBUTE_NAMES`` (bool, integer or float). # [N, 15]
            seed: key of the noise, in [0, 2**63).

        Returns:
            float32 images in [0, 1]. # [N, 28, 28]

        Raises:
            ValueError: ``attributes`` not ``[N, 15]`` or not 0/1.
        """
        return generate_images(self, self.decode, self.latent_dim, attributes, seed)


def cvae_loss(
    model: ConditionalVAE, x: torch.Tensor, y: torch.Tensor, *, seed: int, offset: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative conditional ELBO per image, averaged over the batch.

    ``sum_pixels BCE(x, sigmoid(logits)) + KL(q(z|x, y) || N(0, I))``; the latent sample uses
    :func:`lcengine.reparameterize` at Philox stream ``(seed, offset)``.

    Args:
        x: images in [0, 1]. # [B, 28, 28]
        y: their 0/1 attribute rows. # [B, 15]

    Returns:
        ``(loss, reconstruction term, kl)``, batch means (scalars).
    """
    mu, logvar = model.encode(x, y)  # [B, D], [B, D]
    z = lcengine.reparameterize(mu, logvar, seed=seed, offset=offset)  # [B, D]
    logits = model.decode_logits(z, y)  # [B, 28, 28]
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    recon = recon.mean()  # scalar
    kl = lcengine.gaussian_kl(mu, logvar, reduction="mean")  # scalar
    return recon + kl, recon, kl


def train_cvae(
    images: ArrayLike,
    attributes,
    *,
    latent_dim: int = 16,
    hidden: Sequence[int] = (512, 512),
    epochs: int = FULL["epochs"],
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> ConditionalVAE:
    """Trains a :class:`ConditionalVAE` on images and their attribute rows (Adam, shuffled
    minibatches, Bernoulli reconstruction term, all seeded).

    Noise comes from :func:`lcengine.reparameterize` at Philox offset ``step * batch_size *
    latent_dim``. The per-epoch history ``[{"epoch", "loss", "recon", "kl", "seconds"}]`` is
    attached as ``model.history``. Settings: :data:`FULL` (the demo's, with its measured time)
    and :data:`FAST` (smoke tests).

    Args:
        images: training images in [0, 1]. # [N, 28, 28]
        attributes: their 0/1 attribute rows, columns ``ATTRIBUTE_NAMES``. # [N, 15]
        latent_dim: D.
        hidden: hidden widths of the MLPs.
        epochs: passes over the data.
        batch_size: minibatch size.
        lr: Adam learning rate.
        seed: seeds the initialization, the shuffling and the latent noise.
        progress: a tqdm bar over the epochs (off automatically when not a TTY).

    Returns:
        The trained model in eval mode.
    """
    from tqdm.auto import tqdm

    x, y = check_training_pairs(images, attributes)  # [N, 28, 28], [N, 15]
    check_training_settings(epochs, batch_size, seed, lr)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ConditionalVAE(latent_dim=latent_dim, hidden=hidden)
    order = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n, d = x.shape[0], model.latent_dim
    history: list[dict] = []
    step = 0
    model.train()
    bar = tqdm(range(epochs), desc="train CVAE", disable=None if progress else True)
    for epoch in bar:
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=order)
        tot = rec = kl_sum = 0.0
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            xb, yb = x[idx], y[idx]  # [b, 28, 28], [b, 15]
            loss, recon, kl = cvae_loss(model, xb, yb, seed=seed, offset=step * batch_size * d)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            b = xb.shape[0]
            tot += float(loss.detach()) * b
            rec += float(recon.detach()) * b
            kl_sum += float(kl.detach()) * b
        if not math.isfinite(tot):
            raise FloatingPointError(
                f"CVAE training diverged at epoch {epoch} (loss {tot}); lower lr"
            )
        history.append(
            {
                "epoch": epoch,
                "loss": tot / n,
                "recon": rec / n,
                "kl": kl_sum / n,
                "seconds": time.perf_counter() - t0,
            }
        )
        bar.set_postfix(loss=f"{tot / n:.1f}", kl=f"{kl_sum / n:.1f}")
    model.eval()
    model.history = history
    return model


# --------------------------------------------------------------------------------------------
# Checkpoint
# --------------------------------------------------------------------------------------------


def save_cvae(model: ConditionalVAE, path_dir: Union[str, os.PathLike]) -> Path:
    """Commits a :class:`ConditionalVAE` into the folder ``path_dir`` (see the module
    docstring). Returns the folder."""
    if not isinstance(model, ConditionalVAE):
        raise TypeError(f"model must be a ConditionalVAE, got {type(model).__name__}")
    return commit_module(path_dir, CVAE_STEM, model, _CVAE_FORMAT, what="save_cvae")


def has_cvae_checkpoint(path_dir: Union[str, os.PathLike]) -> bool:
    """The folder holds a conditional VAE record (``cvae.json`` or ``cvae.previous.json``)."""
    return has_checkpoint(path_dir, CVAE_STEM)


def _cvae_architecture(record: dict, path: Path, what: str) -> dict:
    return {
        "latent_dim": record_width(
            record_value(record, "config.latent_dim", path, what), "config.latent_dim", path, what
        ),
        "hidden": record_widths(
            record_value(record, "config.hidden", path, what), "config.hidden", path, what
        ),
    }


def _build_cvae(ck: LoadedCheckpoint) -> ConditionalVAE:
    return build_module(
        ck,
        record_format=_CVAE_FORMAT,
        kind="conditional VAE",
        what="load_cvae",
        parse=_cvae_architecture,
        make=ConditionalVAE,
    )


def load_cvae(
    path_dir: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu"
) -> ConditionalVAE:
    """Loads a :class:`ConditionalVAE` saved by :func:`save_cvae` (checksum, architecture,
    tensor names and shapes, finiteness checked; falls back to ``cvae.previous.json``), in eval
    mode.

    Raises:
        ValueError: nothing loadable; the message names the file.
    """
    return load_module(path_dir, CVAE_STEM, "load_cvae", _build_cvae, device)


__all__ = [
    "CVAE_STEM",
    "FAST",
    "FULL",
    "GENERATE_BATCH",
    "NUM_ATTRIBUTES",
    "ConditionalVAE",
    "check_attribute_rows",
    "check_training_settings",
    "check_training_pairs",
    "cvae_loss",
    "generate_images",
    "has_cvae_checkpoint",
    "load_cvae",
    "save_cvae",
    "train_cvae",
]
