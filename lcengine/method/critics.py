# SPDX-License-Identifier: Apache-2.0
"""The networks of latent constraints: realism critic, attribute critic and actor.

Every network is a plain MLP whose weights live in an ``nn.ModuleList`` named ``layers`` (only
``nn.Linear`` modules, applied in order, with the nonlinearity named by the string attribute
``activation`` between them and none after the last), plus, for the conditional networks, one
``nn.Linear`` named ``y_embedding`` that maps the attribute vector to an embedding concatenated
to ``z`` before ``layers[0]``. That fixed structure is the critic contract
(the Protocols in :mod:`lcengine.ops.optimize_latents.prepare`, plainest form
:class:`lcengine.reference.CriticMLP`): the fused optimizer ``lcengine.optimize_latents`` reads the
weights straight from ``layers`` and ``y_embedding``, and the nonlinearity is
:func:`lcengine.reference.activation_ref` (one definition for the critics, the reference and the
kernels).

Defaults follow the reference implementation of Engel et al. (ReLU MLPs, one logit), scaled down
from 4 x 2048 to 4 x 256 so the whole demo trains in minutes on two CPU cores.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Optional, Sequence, TypeVar

import torch
from torch import nn

from lcengine.reference import ACTIVATIONS, LEAKY_SLOPE, activation_ref
from lcengine.validation import (
    check_keys,
    check_parameter_count,
    check_str,
    check_width,
    check_widths,
    config_errors,
)

DEFAULT_HIDDEN: tuple[int, ...] = (256, 256, 256, 256)
DEFAULT_EMBED_DIM = 32

_Net = TypeVar("_Net", bound="_MLP")


def _check_network(
    module: str,
    latent_dim: Any,
    num_attributes: Any,
    hidden: Any,
    activation: Any,
    *,
    embed_dim: Optional[Any] = None,
    out_dim: Optional[int] = None,
    prefix: str = "",
    count: bool = True,
) -> tuple[int, int, tuple[int, ...], str]:
    """Checks a network's shape before anything is allocated: every width in
    ``[1, MAX_WIDTH]``, at most ``MAX_LAYERS`` hidden layers, at most ``MAX_PARAMETERS``
    parameters (``lcengine.validation``). ``out_dim`` None: ``num_attributes`` logits."""
    latent_dim = check_width(f"{prefix}latent_dim", latent_dim)
    num_attributes = check_width(f"{prefix}num_attributes", num_attributes)
    widths = check_widths(f"{prefix}hidden", hidden)
    check_str(f"{prefix}activation", activation, choices=ACTIVATIONS)
    in_dim, extra = latent_dim, 0
    if embed_dim is not None:
        embed_dim = check_width(f"{prefix}embed_dim", embed_dim)
        in_dim, extra = latent_dim + embed_dim, (num_attributes + 1) * embed_dim
    if count:
        out = num_attributes if out_dim is None else out_dim
        check_parameter_count(module, (in_dim,) + widths + (out,), extra=extra)
    return latent_dim, num_attributes, widths, activation


def _check_input(name: str, t: Any, width: int, module: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"{module}: {name} must be a torch.Tensor of shape [B, {width}], got {type(t).__name__}"
        )
    if t.dim() != 2 or t.shape[1] != width:
        raise ValueError(f"{module}: {name} must have shape [B, {width}], got {list(t.shape)}")
    return t


class _MLP(nn.Module):
    """``layers`` (nn.Linear only) with ``activation`` between them; none after the last."""

    def _build_layers(self, in_dim: int, hidden: tuple[int, ...], out_dim: int) -> None:
        widths = (in_dim,) + hidden + (out_dim,)
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )

    def _build_conditional(
        self,
        latent_dim: int,
        num_attributes: int,
        hidden: Sequence[int],
        embed_dim: int,
        activation: str,
        out_dim: int,
    ) -> None:
        """``y_embedding`` plus ``layers`` over ``[z, embedding]``: the conditional networks."""
        self.latent_dim, self.num_attributes, self.hidden, self.activation = _check_network(
            type(self).__name__,
            latent_dim,
            num_attributes,
            hidden,
            activation,
            embed_dim=embed_dim,
            out_dim=out_dim,
        )
        self.embed_dim = embed_dim
        self.y_embedding = nn.Linear(num_attributes, embed_dim)
        self._build_layers(latent_dim + embed_dim, self.hidden, out_dim)

    @classmethod
    def from_config(
        cls: type[_Net],
        d: Mapping[str, Any],
        *,
        source: Optional[str] = None,
        key: str = "critic",
    ) -> _Net:
        """``cls(**d)`` for ``d`` read from a file (the inverse of :meth:`config`), every key
        checked before anything is allocated.

        Args:
            d: the JSON object of constructor arguments.
            source: where ``d`` was read from (a file path), put first in error messages.
            key: the name of ``d`` in that file (``zero_shot[0].critic``), for messages.

        Raises:
            ValueError: not an object, an unknown or missing key, or a width of the wrong type
                or out of range; the message names ``source`` and the key.
        """
        params = inspect.signature(cls.__init__).parameters
        known = [n for n in params if n != "self"]
        required = [n for n in known if params[n].default is inspect.Parameter.empty]
        with config_errors(source):
            args = check_keys(key, d, known, what=f"{cls.__name__} keys")
            missing = [n for n in required if n not in args]
            if missing:
                raise ValueError(f"{key}: missing {cls.__name__} keys {missing}")
            _check_network(  # the widths, named by key; the constructor counts parameters
                cls.__name__,
                args["latent_dim"],
                args["num_attributes"],
                args.get("hidden", params["hidden"].default),
                args.get("activation", params["activation"].default),
                embed_dim=args.get("embed_dim") if "embed_dim" in known else None,
                prefix=f"{key}.",
                count=False,
            )
            try:
                return cls(**args)
            except ValueError as exc:  # the parameter count (the widths passed above)
                raise ValueError(f"{key}: {exc}") from exc

    def _trunk(self, h: torch.Tensor) -> torch.Tensor:
        act = activation_ref(self.activation)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < last:
                h = act(h)
        return h

    def config(self) -> dict:
        """JSON-serializable constructor arguments (``type(self)(**config)`` rebuilds it)."""
        raise NotImplementedError


class RealismCritic(_MLP):
    """``D(z, y)``: one logit, high for encodings of real data carrying their own attributes.

    ``y`` enters through the linear embedding ``y_embedding`` that is concatenated to ``z``; the
    result goes through ``layers``. Trained (see :mod:`lcengine.method.training`) to say 1 on
    ``[z ~ q(z|x), y]`` and 0 on prior samples, actor outputs and real encodings with another
    row's attributes, so it judges realism *and* consistency with ``y``.

    Args:
        latent_dim: D.
        num_attributes: A.
        hidden: widths of the hidden layers.
        embed_dim: width of the attribute embedding.
        activation: "relu" | "softplus" | "leaky_relu".
    """

    # forward computes exactly the MLP of `layers` (the fused optimizer's contract)
    lcengine_contract_forward = True

    def __init__(
        self,
        latent_dim: int,
        num_attributes: int,
        hidden: Sequence[int] = DEFAULT_HIDDEN,
        embed_dim: int = DEFAULT_EMBED_DIM,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self._build_conditional(latent_dim, num_attributes, hidden, embed_dim, activation, 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Realism logits.

        Args:
            z: latents. # [B, D]
            y: attribute vectors (0/1 as floats). # [B, A]

        Returns:
            One logit per row. # [B]
        """
        _check_input("z", z, self.latent_dim, "RealismCritic")
        _check_input("y", y, self.num_attributes, "RealismCritic")
        h = torch.cat([z, self.y_embedding(y.to(z.dtype))], dim=1)  # [B, D + E]
        return self._trunk(h).squeeze(1)  # [B]

    def config(self) -> dict:
        return {
            "latent_dim": self.latent_dim,
            "num_attributes": self.num_attributes,
            "hidden": list(self.hidden),
            "embed_dim": self.embed_dim,
            "activation": self.activation,
        }


class AttributeCritic(_MLP):
    """``D_attr(z)``: one logit per binary attribute, trained on encodings of labelled data.

    Args:
        latent_dim: D.
        num_attributes: A (number of output logits).
        hidden: widths of the hidden layers.
        activation: "relu" | "softplus" | "leaky_relu".
    """

    # forward computes exactly the MLP of `layers` (the fused optimizer's contract)
    lcengine_contract_forward = True

    def __init__(
        self,
        latent_dim: int,
        num_attributes: int,
        hidden: Sequence[int] = DEFAULT_HIDDEN,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.latent_dim, self.num_attributes, self.hidden, self.activation = _check_network(
            "AttributeCritic", latent_dim, num_attributes, hidden, activation
        )
        self._build_layers(latent_dim, self.hidden, num_attributes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Attribute logits.

        Args:
            z: latents. # [B, D]

        Returns:
            One logit per attribute. # [B, A]
        """
        _check_input("z", z, self.latent_dim, "AttributeCritic")
        return self._trunk(z)  # [B, A]

    def config(self) -> dict:
        return {
            "latent_dim": self.latent_dim,
            "num_attributes": self.num_attributes,
            "hidden": list(self.hidden),
            "activation": self.activation,
        }


class StackedAttributeCritic(nn.Module):
    """Several attribute critics read as one: their logits concatenated in order.

    This is how zero-shot constraints join the data's attribute critic: the base critic gives
    the first A logits, each zero-shot critic its own columns after them.

    Args:
        critics: attribute critics over the same latent space.
    """

    # forward concatenates its critics' logits in order (the fused optimizer's contract)
    lcengine_contract_forward = True

    def __init__(self, critics: Sequence[AttributeCritic]) -> None:
        super().__init__()
        if not critics:
            raise ValueError("critics must hold at least one AttributeCritic")
        dims = {c.latent_dim for c in critics}
        if len(dims) != 1:
            raise ValueError(f"critics must share one latent_dim, got {sorted(dims)}")
        self.critics = nn.ModuleList(critics)
        self.latent_dim = dims.pop()
        self.num_attributes = sum(c.num_attributes for c in critics)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Concatenated logits. # [B, D] -> [B, sum A_i]"""
        return torch.cat([c(z) for c in self.critics], dim=1)


class Actor(_MLP):
    """``G(z, y)``: moves a latent into the region both critics accept, gated.

    The trunk (``y_embedding`` + ``layers``) outputs ``2 D`` numbers, split into a proposal
    ``dz`` and gate logits ``g``; the output is
    ``z' = (1 - sigmoid(g)) * z + sigmoid(g) * dz``, so the actor can leave dimensions that are
    already fine untouched (gate near 0), which keeps the distance penalty small.

    Args:
        latent_dim: D.
        num_attributes: A.
        hidden: widths of the hidden layers.
        embed_dim: width of the attribute embedding.
        activation: "relu" | "softplus" | "leaky_relu".
    """

    def __init__(
        self,
        latent_dim: int,
        num_attributes: int,
        hidden: Sequence[int] = DEFAULT_HIDDEN,
        embed_dim: int = DEFAULT_EMBED_DIM,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self._build_conditional(
            latent_dim, num_attributes, hidden, embed_dim, activation, 2 * latent_dim
        )

    def forward_with_gates(
        self, z: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z', gates)``; gates = sigmoid(g) in (0, 1). # [B, D], [B, A] -> [B, D], [B, D]"""
        _check_input("z", z, self.latent_dim, "Actor")
        _check_input("y", y, self.num_attributes, "Actor")
        h = torch.cat([z, self.y_embedding(y.to(z.dtype))], dim=1)  # [B, D + E]
        out = self._trunk(h)  # [B, 2D]
        dz, gate_logits = out[:, : self.latent_dim], out[:, self.latent_dim :]  # [B, D] each
        gates = torch.sigmoid(gate_logits)  # [B, D]
        return (1.0 - gates) * z + gates * dz, gates

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Transformed latents.

        Args:
            z: input latents (prior samples or encodings). # [B, D]
            y: requested attribute vectors. # [B, A]

        Returns:
            ``z'``. # [B, D]
        """
        return self.forward_with_gates(z, y)[0]

    def config(self) -> dict:
        return {
            "latent_dim": self.latent_dim,
            "num_attributes": self.num_attributes,
            "hidden": list(self.hidden),
            "embed_dim": self.embed_dim,
            "activation": self.activation,
        }


NETWORKS = ("realism", "attribute", "actor")  # the networks of a fitted run, checkpoint order


def constraint_networks(latent_dim: int, num_attributes: int, config: Any) -> dict[str, nn.Module]:
    """The realism critic, the attribute critic and the actor of a run, as ``config`` (a
    :class:`~lcengine.method.config.TrainingConfig`) shapes them, freshly initialized from
    torch's global generator (the trainer seeds it; a loader overwrites the weights)."""
    c = config
    return {
        "realism": RealismCritic(latent_dim, num_attributes, c.hidden, c.embed_dim, c.activation),
        "attribute": AttributeCritic(latent_dim, num_attributes, c.attribute_hidden, c.activation),
        "actor": Actor(latent_dim, num_attributes, c.hidden, c.embed_dim, c.activation),
    }


def load_network_tensors(
    modules: Mapping[str, nn.Module], tensors: Mapping[str, torch.Tensor], source: str
) -> None:
    """Loads the checkpoint tensors ``net.<name>.<param>`` into each module of ``modules``
    (copied onto the module's device); a missing or mis-shaped tensor raises ValueError
    naming ``source`` and the tensor."""
    for name, module in modules.items():
        prefix = f"net.{name}."
        sub = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        expected = module.state_dict()
        missing = sorted(set(expected) - set(sub))
        if missing:
            named = [prefix + m for m in missing]
            raise ValueError(f"{source}: missing tensors for {name}: {named}")
        for k, v in expected.items():
            if tuple(sub[k].shape) != tuple(v.shape):
                raise ValueError(
                    f"{source}: tensor {prefix + k} has shape {list(sub[k].shape)}, the "
                    f"configured network expects {list(v.shape)}"
                )
        module.load_state_dict(sub)


__all__ = [
    "ACTIVATIONS",
    "LEAKY_SLOPE",
    "Actor",
    "AttributeCritic",
    "DEFAULT_EMBED_DIM",
    "DEFAULT_HIDDEN",
    "NETWORKS",
    "RealismCritic",
    "StackedAttributeCritic",
    "constraint_networks",
    "load_network_tensors",
]
