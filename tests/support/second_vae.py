# SPDX-License-Identifier: Apache-2.0
"""A second VAE of a different architecture (convolutional), to prove "bring your own model".

The digits application's model is an MLP (``lcengine.apps.digits.vae.MnistVAE``); this one is a
small conv/deconv VAE written the way a user would write theirs: it knows nothing about lcengine
except the interface ``encode(x) -> (mu, logvar)``, ``decode(z) -> x`` and a ``latent_dim``
attribute. It deliberately has no ``data_shape`` attribute, so ``LatentModel.from_module``
must infer it by decoding one latent.

Usage in tests::

    from support.second_vae import make_conv_vae, train_conv_vae
    vae = make_conv_vae(latent_dim=8)              # untrained, seeded
    vae = train_conv_vae(images[:1000], epochs=2)  # ~2-5 s per 1,000 images and epoch (2 cores)
    model = LatentModel.from_module(vae)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import lcengine


class ConvVAE(nn.Module):
    """Conv VAE for 28x28 images in [0, 1], input and output ``[B, 28, 28]``.

    Encoder: conv 4x4/2 (1 -> 16) -> conv 4x4/2 (16 -> 32) -> linear to ``(mu, logvar)``.
    Decoder: linear -> 32x7x7 -> deconv 4x4/2 -> deconv 4x4/2 -> sigmoid.
    """

    def __init__(self, latent_dim: int = 8):
        super().__init__()
        self.latent_dim = latent_dim
        self.enc = nn.Sequential(
            nn.Conv2d(1, 16, 4, stride=2, padding=1),
            nn.ReLU(),  # [B, 16, 14, 14]
            nn.Conv2d(16, 32, 4, stride=2, padding=1),
            nn.ReLU(),  # [B, 32, 7, 7]
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 2 * latent_dim),
        )
        self.dec_fc = nn.Linear(latent_dim, 32 * 7 * 7)
        self.dec = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),
            nn.ReLU(),  # [B, 16, 14, 14]
            nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1),
        )  # [B, 1, 28, 28]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, 28, 28] -> (mu [B, D], logvar [B, D])``."""
        mu, logvar = self.enc(x.unsqueeze(1)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, D] -> x [B, 28, 28]`` in [0, 1]."""
        h = self.dec_fc(z).reshape(-1, 32, 7, 7)
        return torch.sigmoid(self.dec(h)).squeeze(1)


def make_conv_vae(latent_dim: int = 8, seed: int = 0) -> ConvVAE:
    """An untrained, deterministically initialized :class:`ConvVAE` (eval mode)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ConvVAE(latent_dim).eval()


def train_conv_vae(
    images,
    latent_dim: int = 8,
    *,
    epochs: int = 3,
    batch_size: int = 64,
    lr: float = 2e-3,
    decoder_scale: float = 0.1,
    seed: int = 0,
) -> ConvVAE:
    """Quickly trains a :class:`ConvVAE` with lcengine's reparameterize and gaussian_kl.

    Args:
        images: float images in [0, 1]. # [N, 28, 28]
    """
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))  # [N, 28, 28]
    vae = make_conv_vae(latent_dim, seed).train()
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    step = 0
    for _ in range(epochs):
        for idx in torch.randperm(x.shape[0], generator=gen).split(batch_size):
            mu, logvar = vae.encode(x[idx])  # [b, D]
            z = lcengine.reparameterize(
                mu, logvar, seed=seed, offset=step * batch_size * latent_dim
            )  # [b, D]
            recon = ((vae.decode(z) - x[idx]) ** 2).flatten(1).sum(1).mean()
            loss = recon / (2 * decoder_scale**2) + lcengine.gaussian_kl(mu, logvar)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    return vae.eval()
