# SPDX-License-Identifier: Apache-2.0
"""A conditional baseline that retrains: a VAE trained jointly with an attribute head on its
latent, method name ``vae_head``.

:class:`VAEWithHead` is the digits' :class:`~lcengine.apps.digits.vae.MnistVAE` (same MLP
encoder and decoder, same Gaussian decoder of fixed scale) plus a head, an MLP ``D -> head_hidden
-> 15`` whose logits predict the 15 attribute columns (``digit_0`` .. ``digit_9``, then the shape
attributes) from ``z``. :func:`train_vae_head` minimizes, per batch::

    vae_loss(x) + head_weight * sum_j BCE(head(z)_j, a_j)

where ``vae_loss`` is :func:`~lcengine.apps.digits.vae.vae_loss` as is (the negative ELBO) and
``z`` is the posterior sample it decodes, so the head's gradient shapes the encoder too: the
latent space is organized by the attributes, but the model stays unconditional (the decoder sees
only ``z``).

Generation for a target vector (:meth:`VAEWithHead.generate`) is best-of-M rejection: ``M =
candidates`` prior samples ``z ~ N(0, I)`` per requested row, keep the one whose head
log-likelihood of the target, ``sum_j log p(a_j | z)`` (independent Bernoullis), is highest, and
decode it (the decoder mean). Candidate noise comes from :func:`lcengine.standard_normal` keyed
by the seed, row ``r``'s candidates at stream offset ``r * M * D``, so the images do not depend
on the batching (at most 1,024 rows, and 65,536 candidates, at a time).

Its checkpoint (:func:`save_vae_head`, :func:`load_vae_head`) is a folder committed by
:func:`lcengine.method.store.commit_module` with stem ``vae_head``: ``vae_head.json`` (format,
``config``, training ``history``, ``weights_file``, ``weights_sha256``),
``vae_head.previous.json`` and ``vae_head.<sha256[:16]>.safetensors``. The loader checks the
record's keys (widths are integers in ``[1, 65536]``) and the parameter count before allocating
the network.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Sequence, Union

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
from lcengine.validation import (
    MAX_LAYERS,
    check_int,
    check_positive_float,
    check_width,
)

from .data import IMAGE_SIDE
from .latent_gmm import (
    GENERATE_BATCH,
    NUM_ATTRIBUTES,
    check_attributes,
    check_seed,
    check_training_images,
    module_device,
)
from .vae import MnistVAE, vae_loss

ArrayLike = Union[np.ndarray, torch.Tensor]

METHOD = "vae_head"
VAE_HEAD_STEM = "vae_head"
_VAE_HEAD_FORMAT = "lcengine.VAEWithHead/1"
MAX_CANDIDATES = 65536
_CANDIDATE_ROWS = 65536  # candidate latents scored at a time (rows x candidates)

# The demo's settings (keyword arguments of train_vae_head): the demo VAE's architecture and
# epochs (config.py's full preset: latent_dim 16, hidden (512, 512), 40 epochs of 128), plus the
# head. On the 4,000 training digits, one thread of the (loaded) 2-core machine: 41 s, against
# 37 s for the demo's train_vae in the same run. Digit identity of 500 images generated for the
# held-out attribute vectors, read by the pixel classifier: 48% (seed 0) and 55% (seed 1) with
# 64 candidates (1 candidate: 12%, 256: 65%); head_weight 1 or 50 gave 50% and 49%, a linear
# head 31%. Prior samples of this small-decoder-scale VAE are poor, and the selection can only
# pick among them.
FULL = {
    "latent_dim": 16,
    "hidden": (512, 512),
    "epochs": 40,
    "batch_size": 128,
    "lr": 1e-3,
    "decoder_scale": 0.1,
    "head_hidden": (256,),
    "head_weight": 10.0,
    "candidates": 64,
}
# Smoke tests' settings (the demo's fast VAE plus a small head): 1.1 s on the 4,000 digits, one
# thread; its images are not meaningful (digit identity 22%).
FAST = {
    "latent_dim": 8,
    "hidden": (128,),
    "epochs": 3,
    "batch_size": 128,
    "lr": 3e-3,
    "decoder_scale": 0.1,
    "head_hidden": (32,),
    "head_weight": 10.0,
    "candidates": 16,
}


def _check_head_hidden(value: Sequence[int]) -> tuple[int, ...]:
    """Hidden widths of the head: a list or tuple of 0 to ``MAX_LAYERS`` widths (empty: a
    linear head)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(
            f"head_hidden must be a list of layer widths, got {type(value).__name__} {value!r}"
        )
    if len(value) > MAX_LAYERS:
        raise ValueError(f"head_hidden must hold at most {MAX_LAYERS} widths, got {len(value)}")
    return tuple(check_width(f"head_hidden[{i}]", as_int(w)) for i, w in enumerate(value))


def head_parameter_count(latent_dim: int, head_hidden: Sequence[int]) -> int:
    """Parameters of the head ``D -> head_hidden -> 15``, without building it."""
    sizes = (latent_dim,) + tuple(head_hidden) + (NUM_ATTRIBUTES,)
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


class VAEWithHead(MnistVAE):
    """:class:`~lcengine.apps.digits.vae.MnistVAE` plus an attribute head on its latent (see
    the module docstring).

    Args:
        latent_dim: D.
        hidden: widths of the VAE's hidden ReLU layers.
        decoder_scale: fixed standard deviation of the Gaussian decoder.
        head_hidden: widths of the head's hidden ReLU layers (empty: linear head).
        head_weight: weight of the head's BCE in the training loss (recorded in the config).
        candidates: M, prior samples scored per requested row by :meth:`generate`.
    """

    def __init__(
        self,
        latent_dim: int = 16,
        hidden: Sequence[int] = (512, 512),
        decoder_scale: float = 0.1,
        head_hidden: Sequence[int] = (256,),
        head_weight: float = 10.0,
        candidates: int = 64,
    ) -> None:
        super().__init__(latent_dim=latent_dim, hidden=hidden, decoder_scale=decoder_scale)
        self.head_hidden = _check_head_hidden(head_hidden)
        self.head_weight = check_positive_float("head_weight", head_weight)
        self.candidates = check_int(
            "candidates", as_int(candidates), minimum=1, maximum=MAX_CANDIDATES
        )
        sizes = (self.latent_dim,) + self.head_hidden + (NUM_ATTRIBUTES,)
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.head = nn.Sequential(*layers)

    def config(self) -> dict:
        """Architecture and generation settings, enough to rebuild the module."""
        return {
            **super().config(),
            "head_hidden": list(self.head_hidden),
            "head_weight": self.head_weight,
            "candidates": self.candidates,
        }

    def head_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Attribute logits. # [B, D] -> [B, 15]"""
        return self.head(z)

    def head_log_likelihood(self, z: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        """``sum_j log p(a_j | z)`` under the head's independent Bernoullis.

        Args:
            z: latents. # [B, D]
            attributes: 0/1 targets (float). # [B, 15]

        Returns:
            Log-likelihoods. # [B]
        """
        logits = self.head_logits(z)  # [B, 15]
        bce = F.binary_cross_entropy_with_logits(logits, attributes, reduction="none")  # [B, 15]
        return -bce.sum(1)  # [B]

    @torch.no_grad()
    def select_latents(self, attributes: ArrayLike, seed: int) -> torch.Tensor:
        """Best-of-M latents: per row, the prior sample (of ``candidates``) whose head
        log-likelihood of the row's target is highest (the first one on a tie).

        Args:
            attributes: 0/1 targets, columns ``ATTRIBUTE_NAMES``. # [N, 15]
            seed: noise seed; row r's candidates use the stream at offset ``r * M * D``.

        Returns:
            float32 latents on the model's device. # [N, D]
        """
        a = check_attributes(attributes)  # [N, 15]
        seed = check_seed(seed)
        device = module_device(self)
        n, m, d = a.shape[0], self.candidates, self.latent_dim
        rows = max(1, min(GENERATE_BATCH, _CANDIDATE_ROWS // m))
        target = torch.from_numpy(a).to(device=device, dtype=torch.float32)  # [N, 15]
        out = [torch.zeros(0, d, device=device)]
        for i in range(0, n, rows):
            tb = target[i : i + rows]  # [b, 15]
            b = tb.shape[0]
            # drawn on the CPU stream, then moved: a seed gives the same latents on any device
            z = lcengine.standard_normal((b * m, d), seed=seed, offset=i * m * d).to(device)
            ll = self.head_log_likelihood(z, tb.repeat_interleave(m, dim=0))  # [b*M]
            best = ll.reshape(b, m).argmax(1)  # [b]
            out.append(z.reshape(b, m, d)[torch.arange(b, device=device), best])  # [b, D]
        return torch.cat(out)  # [N, D]

    @torch.no_grad()
    def generate(self, attributes: ArrayLike, seed: int) -> np.ndarray:
        """Images for the requested attribute vectors (best-of-M latents, decoded).

        Args:
            attributes: 0/1 vectors, columns ``ATTRIBUTE_NAMES``. # [N, 15]
            seed: noise seed (the same seed gives the same images).

        Returns:
            float32 images in [0, 1]. # [N, 28, 28]
        """
        was_training = self.training
        self.eval()
        try:
            z = self.select_latents(attributes, seed)  # [N, D]
            out = [torch.zeros(0, IMAGE_SIDE, IMAGE_SIDE)]
            for i in range(0, z.shape[0], GENERATE_BATCH):
                x = self.decode(z[i : i + GENERATE_BATCH])  # [b, 28, 28]
                out.append(x.float().clamp(0.0, 1.0).cpu())
        finally:
            self.train(was_training)
        return torch.cat(out).numpy()  # [N, 28, 28]


class _Tap:
    """Lets :func:`~lcengine.apps.digits.vae.vae_loss` run on the model unchanged while keeping
    the posterior sample ``z`` it decodes, so that the head is trained on the same ``z``."""

    def __init__(self, model: VAEWithHead) -> None:
        self.model = model
        self.decoder_scale = model.decoder_scale
        self.z: torch.Tensor | None = None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(x)  # [B, D], [B, D]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        self.z = z  # [B, D]
        return self.model.decode(z)  # [B, 28, 28]


def train_vae_head(
    images: ArrayLike,
    attributes: ArrayLike,
    *,
    latent_dim: int = 16,
    hidden: Sequence[int] = (512, 512),
    epochs: int = 40,
    batch_size: int = 128,
    lr: float = 1e-3,
    head_weight: float = 10.0,
    decoder_scale: float = 0.1,
    head_hidden: Sequence[int] = (256,),
    candidates: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> VAEWithHead:
    """Trains a :class:`VAEWithHead` (Adam, shuffled minibatches, all seeded, as
    :func:`~lcengine.apps.digits.vae.train_vae`): loss ``vae_loss + head_weight * BCE`` with the
    BCE summed over the 15 columns and averaged over the batch.

    The latent noise is ``lcengine.reparameterize`` at Philox offset ``step * batch_size *
    latent_dim``. The per-epoch history ``[{"epoch", "loss", "recon", "kl", "head_bce",
    "head_accuracy", "seconds"}, ...]`` (``head_accuracy``: the fraction of attribute columns
    the head gets right at the 0.5 level on the training samples) is attached as
    ``model.history``.

    Args:
        images: training images in [0, 1]. # [N >= 2, 28, 28]
        attributes: their 0/1 attribute vectors (``ATTRIBUTE_NAMES`` columns). # [N, 15]
        latent_dim: D.
        hidden: hidden widths of the VAE's MLPs.
        epochs: passes over the data.
        batch_size: minibatch size.
        lr: Adam learning rate.
        head_weight: weight of the head's BCE (> 0).
        decoder_scale: fixed Gaussian decoder scale.
        head_hidden: hidden widths of the head (empty: linear).
        candidates: M of the best-of-M generation.
        seed: seeds the initialization, the shuffling and the latent noise.
        progress: a tqdm bar over the epochs.

    Returns:
        The trained model in eval mode.
    """
    from tqdm.auto import tqdm

    x = check_training_images(images)  # [N, 28, 28]
    a = torch.from_numpy(check_attributes(attributes, rows=x.shape[0])).float()  # [N, 15]
    latent_dim = check_width("latent_dim", as_int(latent_dim))
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        check_int(name, as_int(v), minimum=1)
    seed = check_seed(seed)
    check_positive_float("lr", lr)
    check_positive_float("head_weight", head_weight)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VAEWithHead(
            latent_dim=latent_dim,
            hidden=hidden,
            decoder_scale=decoder_scale,
            head_hidden=head_hidden,
            head_weight=head_weight,
            candidates=candidates,
        )
    order = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    tap = _Tap(model)
    n = x.shape[0]
    history: list[dict] = []
    step = 0
    model.train()
    bar = tqdm(range(epochs), desc="train VAE+head", disable=None if progress else True)
    for epoch in bar:
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=order)
        tot = rec = kl_sum = bce_sum = right = 0.0
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            xb, ab = x[idx], a[idx]  # [b, 28, 28], [b, 15]
            loss_vae, recon, kl = vae_loss(
                tap, xb, seed=seed, offset=step * batch_size * latent_dim
            )
            logits = model.head_logits(tap.z)  # [b, 15]
            bce = F.binary_cross_entropy_with_logits(logits, ab, reduction="none").sum(1).mean()
            loss = loss_vae + model.head_weight * bce
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            b = xb.shape[0]
            tot += float(loss.detach()) * b
            rec += float(recon.detach()) * b
            kl_sum += float(kl.detach()) * b
            bce_sum += float(bce.detach()) * b
            right += float(((logits.detach() > 0).float() == ab).float().mean(1).sum())
        if not math.isfinite(tot):
            raise FloatingPointError(
                f"VAE+head training diverged at epoch {epoch} (loss {tot}); lower lr"
            )
        history.append(
            {
                "epoch": epoch,
                "loss": tot / n,
                "recon": rec / n,
                "kl": kl_sum / n,
                "head_bce": bce_sum / n,
                "head_accuracy": right / n,
                "seconds": time.perf_counter() - t0,
            }
        )
        bar.set_postfix(loss=f"{tot / n:.1f}", bce=f"{bce_sum / n:.2f}")
    tap.z = None
    model.eval()
    model.history = history
    return model


def save_vae_head(model: VAEWithHead, path_dir: Union[str, os.PathLike]) -> Path:
    """Commits a :class:`VAEWithHead` into the folder ``path_dir`` (see the module docstring).
    Returns the folder."""
    if not isinstance(model, VAEWithHead):
        raise TypeError(f"model must be a VAEWithHead, got {type(model).__name__}")
    return commit_module(path_dir, VAE_HEAD_STEM, model, _VAE_HEAD_FORMAT, what="save_vae_head")


def has_vae_head_checkpoint(path_dir: Union[str, os.PathLike]) -> bool:
    """The folder holds a record (``vae_head.json`` or ``vae_head.previous.json``)."""
    return has_checkpoint(path_dir, VAE_HEAD_STEM)


def _record_float(meta: dict, key: str, path: Path, what: str) -> float:
    v = record_value(meta, key, path, what)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{what}: {path} key {key!r} must be a finite positive number, got {v!r}")
    return float(v)


def _vae_head_architecture(meta: dict, path: Path, what: str) -> dict:
    config = meta["config"]
    known = {"latent_dim", "hidden", "decoder_scale", "head_hidden", "head_weight", "candidates"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{what}: {path} key 'config' has unknown keys {unknown}")
    candidates = record_value(meta, "config.candidates", path, what)
    if (
        isinstance(candidates, bool)
        or not isinstance(candidates, int)
        or not 1 <= candidates <= MAX_CANDIDATES
    ):
        raise ValueError(
            f"{what}: {path} key 'config.candidates' must be an integer in "
            f"[1, {MAX_CANDIDATES}], got {candidates!r}"
        )
    return {
        "latent_dim": record_width(
            record_value(meta, "config.latent_dim", path, what), "config.latent_dim", path, what
        ),
        "hidden": record_widths(
            record_value(meta, "config.hidden", path, what), "config.hidden", path, what
        ),
        "decoder_scale": _record_float(meta, "config.decoder_scale", path, what),
        "head_hidden": record_widths(
            record_value(meta, "config.head_hidden", path, what),
            "config.head_hidden",
            path,
            what,
            min_len=0,
        ),
        "head_weight": _record_float(meta, "config.head_weight", path, what),
        "candidates": candidates,
    }


def _build_vae_head(ck: LoadedCheckpoint) -> VAEWithHead:
    return build_module(
        ck,
        record_format=_VAE_HEAD_FORMAT,
        kind="VAE-with-head",
        what="load_vae_head",
        parse=_vae_head_architecture,
        make=VAEWithHead,
    )


def load_vae_head(
    path_dir: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu"
) -> VAEWithHead:
    """Loads a :class:`VAEWithHead` saved by :func:`save_vae_head` (checksum, architecture,
    tensor names and shapes, finiteness checked; falls back to ``vae_head.previous.json``), in
    eval mode.

    Raises:
        ValueError: nothing loadable; the message names the file.
    """
    return load_module(path_dir, VAE_HEAD_STEM, "load_vae_head", _build_vae_head, device)


__all__ = [
    "FAST",
    "FULL",
    "VAEWithHead",
    "VAE_HEAD_STEM",
    "has_vae_head_checkpoint",
    "head_parameter_count",
    "load_vae_head",
    "save_vae_head",
    "train_vae_head",
]
