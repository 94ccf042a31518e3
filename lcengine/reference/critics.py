# SPDX-License-Identifier: Apache-2.0
"""The critic MLP that the fused optimizer reads, in its plainest form.

The contract (what ``lcengine.optimize_latents`` reads from a critic; as ``typing.Protocol``
in ``lcengine.ops.optimize_latents.prepare``): the weights live in an ``nn.ModuleList`` named
``layers`` (``nn.Linear`` only, applied in order), the nonlinearity named by the string attribute
``activation`` (one of :data:`ACTIVATIONS`) sits between them and none after the last; a
conditional critic also has one ``nn.Linear`` named ``y_embedding`` whose output is
concatenated after ``z`` before ``layers[0]``, and its single logit is returned as ``[B]``.

:class:`CriticMLP` is that contract and nothing else: tests and benchmarks build their critics
from it; the method's critics conform to the same contract.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("relu", "softplus", "leaky_relu")
LEAKY_SLOPE = 0.2  # the negative slope of "leaky_relu", part of the contract


def activation_ref(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The elementwise nonlinearity named ``name`` (one of :data:`ACTIVATIONS`)."""
    if name == "relu":
        return F.relu
    if name == "softplus":
        return F.softplus
    if name == "leaky_relu":
        return lambda h: F.leaky_relu(h, LEAKY_SLOPE)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


class CriticMLP(nn.Module):
    """An MLP critic following the optimizer's contract.

    Args:
        dim: latent width ``D``.
        hidden: hidden widths.
        out: output width (``A`` attribute logits; 1 for a realism critic).
        activation: one of :data:`ACTIVATIONS`.
        num_attributes: width of the attribute vector a conditional critic reads (0: none).
        embed_dim: width of the attribute embedding (0: unconditional).
    """

    # forward computes exactly the MLP of `layers` (the fused optimizer's contract)
    lcengine_contract_forward = True

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int],
        out: int,
        activation: str = "relu",
        num_attributes: int = 0,
        embed_dim: int = 0,
    ) -> None:
        super().__init__()
        activation_ref(activation)  # validates the name
        self.activation = activation
        self.latent_dim = dim
        self.num_attributes = num_attributes if embed_dim else out
        self.y_embedding: Optional[nn.Linear] = (
            nn.Linear(num_attributes, embed_dim) if embed_dim else None
        )
        widths = (dim + embed_dim,) + tuple(hidden) + (out,)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits: ``[B]`` for a conditional critic, ``[B, out]`` otherwise.

        Args:
            z: latents. # [B, D]
            y: attribute values, for a conditional critic. # [B, num_attributes]
        """
        act = activation_ref(self.activation)
        h = z if self.y_embedding is None else torch.cat([z, self.y_embedding(y)], 1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = act(h)
        return h.squeeze(1) if self.y_embedding is not None else h
