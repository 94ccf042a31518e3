# SPDX-License-Identifier: Apache-2.0
"""The critic contract, and what every fused optimizer reads: the critics as flat tensors.

The fused runners never call a critic: they read its weights. A critic qualifies when it follows
the structural contract below, stated as :class:`CriticNet` (one MLP), :class:`RealismCriticNet`
(an MLP that also reads ``y``) and :class:`CriticStack` (attribute critics read as one).
``lcengine.method.critics`` (``RealismCritic``, ``AttributeCritic``,
``StackedAttributeCritic``, ``Actor``) and ``lcengine.reference.CriticMLP`` follow it.
Anything else still runs on the eager loop, which only calls the critics.

``parse_critics`` checks two critics against the contract and the request's widths;
``prepare`` turns them and the request into the flat tensors that the native CPU loop, the CUDA
loop and the Triton loop all consume (csrc/lcengine_ops.h, ``OptimizeLatentsArgs``, states
their meaning):

* the realism critic's embedding of the fixed ``y`` and its share of ``layers[0]`` fold into a
  per-row first-layer bias ``row_bias`` [B, H1r], computed once;
* every critic's first layer reads the same ``z``: one stacked ``w_first`` [H1, D];
* logit column 0 is realism (target 1, weight w_r, must exceed tau_r); columns 1..A are the
  attributes (weight w_a * mask, side +1/-1 for requested 1/0, 0 when not requested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol, Sequence, Union, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _nn_module

from ...reference import activation_ref
from .config import OptimizeHyperParams, OptimizeTuning

ACTIVATION_CODES = {"relu": 0, "softplus": 1, "leaky_relu": 2}  # csrc: enum Activation


# ---------------------------------------------------------------------------------------------
# The critic contract.
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class CriticNet(Protocol):
    """One MLP critic that the fused optimizer reads.

    Attributes:
        layers: an ``nn.ModuleList`` of ``nn.Linear`` only (at least two), applied in order.
        activation: the nonlinearity after every layer but the last, one of
            ``"relu"``, ``"softplus"``, ``"leaky_relu"`` (negative slope 0.2).

    Optional attributes, checked against the request when present: ``latent_dim`` (``D``, what
    ``layers[0]`` reads of ``z``) and ``num_attributes`` (the width of ``y`` it reads, or of its
    output for an attribute critic).

    Calling it computes ``layers[-1](act(... act(layers[0](x))))``; as an attribute critic,
    ``critic(z) -> [B, A]`` logits.
    """

    layers: Sequence[nn.Module]
    activation: str

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class RealismCriticNet(CriticNet, Protocol):
    """The realism critic ``D(z, y) -> [B]`` (one logit per row).

    Attributes:
        y_embedding: ``None`` or one ``nn.Linear`` from the ``num_attributes`` leading columns
            of ``y`` to ``E`` features, concatenated after ``z``: ``layers[0]`` reads
            ``[z, y_embedding(y)]`` (``D + E`` features). A realism critic without the
            attribute is read as ``None`` (an unconditional critic).
    """

    y_embedding: Optional[nn.Linear]


@runtime_checkable
class CriticStack(Protocol):
    """Several attribute critics read as one: ``critic(z)`` concatenates their logits in order.

    Attributes:
        critics: the stacked :class:`CriticNet` s, each reading ``z`` alone.
    """

    critics: Sequence[CriticNet]

    def __call__(self, z: torch.Tensor) -> torch.Tensor: ...


AttributeCriticLike = Union[CriticNet, CriticStack]


@dataclass
class Net:
    """One parsed :class:`CriticNet`: its activation name and its layers' parameters."""

    activation: str
    layers: list  # [(weight [out, in], bias [out] or None)]


@dataclass
class Critics:
    """Both critics, parsed: the realism net (and its embedding) and the attribute nets."""

    realism: Net
    embedding: Optional[nn.Linear]
    attributes: list  # [Net]

    @property
    def nets(self) -> list:
        return [self.realism] + self.attributes

    def parameters(self) -> list:
        out = [t for net in self.nets for w, b in net.layers for t in (w, b) if t is not None]
        if self.embedding is not None:
            out += [t for t in (self.embedding.weight, self.embedding.bias) if t is not None]
        return out

    def max_width(self) -> int:
        """The widest hidden layer or first-layer input over every critic."""
        widths = [w.shape[0] for net in self.nets for w, _ in net.layers[:-1]]
        return max(widths + [self.realism.layers[0][0].shape[1]])


def _mlp(module: Any, name: str) -> Net:
    layers = getattr(module, "layers", None)
    if not isinstance(layers, (nn.ModuleList, list, tuple)) or len(layers) == 0:
        raise TypeError(
            f"{name} must hold its layers in a non-empty nn.ModuleList `layers` of "
            f"nn.Linear (the CriticNet contract), got {type(layers).__name__}"
        )
    for i, layer in enumerate(layers):
        if type(layer) is not nn.Linear:
            raise TypeError(
                f"{name}.layers[{i}] is {type(layer).__name__}; the fused optimizer "
                "supports nn.Linear layers only"
            )
    activation = getattr(module, "activation", None)
    if activation not in ACTIVATION_CODES:
        raise ValueError(
            f"{name}.activation must be one of {tuple(ACTIVATION_CODES)}, got {activation!r}"
        )
    if len(layers) < 2:
        raise ValueError(
            f"{name} has a single Linear layer; the fused optimizer needs at least one hidden layer"
        )
    for i in range(1, len(layers)):
        if layers[i].in_features != layers[i - 1].out_features:
            raise ValueError(
                f"{name}.layers[{i}] reads {layers[i].in_features} features but "
                f"layers[{i - 1}] gives {layers[i - 1].out_features}"
            )
    return Net(activation, [(layer.weight, layer.bias) for layer in layers])


def _attribute_nets(critic: Any) -> list:
    if isinstance(critic, CriticStack) and getattr(critic, "layers", None) is None:
        return [_mlp(c, f"attribute_critic.critics[{i}]") for i, c in enumerate(critic.critics)]
    return [_mlp(critic, "attribute_critic")]


def parse_critics(
    realism_critic: Any, attribute_critic: Any, dim: int, num_attr: int, realism_attributes: int
) -> Critics:
    """Parses both critics and checks every width against D, A and realism_attributes.

    Args:
        realism_critic: a :class:`RealismCriticNet`.
        attribute_critic: a :class:`CriticNet` or a :class:`CriticStack`.
        dim: ``D``.
        num_attr: ``A``, the attribute critic's output width.
        realism_attributes: the leading columns of ``y`` the realism critic reads.

    Raises:
        TypeError: a critic that does not follow the structural contract.
        ValueError: one that follows it but whose widths disagree with the request.
    """
    real = _mlp(realism_critic, "realism_critic")
    emb = getattr(realism_critic, "y_embedding", None)
    if emb is not None and type(emb) is not nn.Linear:
        raise TypeError(
            f"realism_critic.y_embedding must be an nn.Linear, got {type(emb).__name__}"
        )
    embed = emb.out_features if emb is not None else 0
    if real.layers[0][0].shape[1] != dim + embed:
        extra = f" plus a {embed}-wide y embedding" if embed else ""
        raise ValueError(
            f"realism_critic.layers[0] reads {real.layers[0][0].shape[1]} features "
            f"but z has D={dim}{extra}"
        )
    if emb is not None and emb.in_features != realism_attributes:
        raise ValueError(
            f"realism_critic.y_embedding reads {emb.in_features} attributes but "
            f"realism_attributes is {realism_attributes}"
        )
    if real.layers[-1][0].shape[0] != 1:
        raise ValueError(
            f"realism_critic must output one logit per row, its last layer gives "
            f"{real.layers[-1][0].shape[0]}"
        )
    attrs = _attribute_nets(attribute_critic)
    for i, net in enumerate(attrs):
        if net.layers[0][0].shape[1] != dim:
            raise ValueError(
                f"attribute critic {i} reads {net.layers[0][0].shape[1]} features but z has D={dim}"
            )
    outputs = sum(net.layers[-1][0].shape[0] for net in attrs)
    if outputs != num_attr:
        raise ValueError(
            f"attribute_critic outputs {outputs} logits but y has A={num_attr} columns"
        )
    return Critics(real, emb, attrs)


# ---------------------------------------------------------------------------------------------
# Is the critic the function the fused optimizer computes?
# ---------------------------------------------------------------------------------------------

# A class attribute: the class that defines a critic's ``forward`` sets it to True to declare
# that its forward computes exactly the contract's MLP of ``layers`` (and ``y_embedding``).
CONTRACT_FORWARD = "lcengine_contract_forward"
PROBE_ROWS = 8  # rows on which an undeclared critic's own forward is compared with the MLP


def _declares_contract_forward(module: Any) -> bool:
    """True when the class that defines ``module``'s forward (or ``__call__``) declares
    :data:`CONTRACT_FORWARD` and no forward hook can change the result."""
    if not isinstance(module, nn.Module):
        return False
    if module._forward_hooks or module._forward_pre_hooks:
        return False
    if _nn_module._global_forward_hooks or _nn_module._global_forward_pre_hooks:
        return False
    for cls in type(module).__mro__:
        if cls is nn.Module:
            return False
        if "forward" in vars(cls) or "__call__" in vars(cls):
            return vars(cls).get(CONTRACT_FORWARD) is True
    return False


def _mlp_forward(net: Net, h: torch.Tensor) -> torch.Tensor:
    act = activation_ref(net.activation)
    for i, (w, b) in enumerate(net.layers):
        h = F.linear(h, w, b)
        if i < len(net.layers) - 1:
            h = act(h)
    return h


def contract_logits(
    critics: Critics, z: torch.Tensor, y_real: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the fused optimizer computes from the parsed critics: ``(realism [B],
    attribute [B, A])`` logits, eager. # z [B, D], y_real [B, A_r]"""
    h = z if critics.embedding is None else torch.cat([z, critics.embedding(y_real)], 1)
    realism = _mlp_forward(critics.realism, h).reshape(-1)  # [B]
    attributes = torch.cat([_mlp_forward(n, z) for n in critics.attributes], 1)  # [B, A]
    return realism, attributes


def forward_mismatch(
    critics: Critics,
    realism_critic: Any,
    attribute_critic: Any,
    z: torch.Tensor,
    y_real: torch.Tensor,
) -> Optional[str]:
    """Why the critics' own calls are not the function the fused optimizer computes, or None.

    Critics whose classes declare :data:`CONTRACT_FORWARD` (with no forward hooks) are taken at
    their word; any other critic (a subclass that overrides ``forward``, a hook, a duck-typed
    module) is called on the first :data:`PROBE_ROWS` rows and compared with the MLP of its
    layers.

    Args:
        z: latents the call starts from. # [B, D]
        y_real: the columns the realism critic reads. # [B, A_r]
    """
    modules = [realism_critic, attribute_critic]
    modules += list(getattr(attribute_critic, "critics", None) or [])
    if all(_declares_contract_forward(m) for m in modules):
        return None
    rows = z[:PROBE_ROWS].detach().to(torch.float32)  # [P, D]
    y_rows = y_real[:PROBE_ROWS].to(torch.float32)  # [P, A_r]
    with torch.no_grad():
        want_r, want_a = contract_logits(critics, rows, y_rows)
        got = {
            "realism_critic": (realism_critic(rows, y_rows), want_r),
            "attribute_critic": (attribute_critic(rows), want_a),
        }
    for name, (own, want) in got.items():
        own = own.reshape(want.shape) if own.numel() == want.numel() else own
        if own.shape != want.shape:
            return (
                f"{name}(...) returns shape {tuple(own.shape)}, its layers compute "
                f"{tuple(want.shape)}"
            )
        diff = (own.to(torch.float32) - want).abs()  # [P] or [P, A]
        if not bool((diff <= 1e-4 + 1e-4 * want.abs()).all()):  # NaN fails too
            return (
                f"{name}'s forward does not compute the MLP of its layers (largest difference "
                f"{diff.max().item():.3g} on {rows.shape[0]} rows): the fused optimizer would "
                f"optimize another function; set {CONTRACT_FORWARD} = True on a class whose "
                "forward is exactly that MLP"
            )
    return None


# ---------------------------------------------------------------------------------------------
# Flat tensors.
# ---------------------------------------------------------------------------------------------


@dataclass
class PreparedNet:
    """One critic past its first layer (which lives in ``Prepared.w_first``)."""

    activation: int  # ACTIVATION_CODES value
    widths: list  # [D, H1_n, ..., out_n]
    weights: list  # layers 1..L-1: [widths[l+1], widths[l]] (weight_dtype)
    biases: list  # layers 1..L-1: [widths[l+1]] float32
    first_offset: int  # column of its first layer inside H1
    output_offset: int  # column of its logits inside C


@dataclass
class Prepared:
    """The flat, contiguous inputs of one fused optimizer call (all on z's device)."""

    nets: list  # [PreparedNet]
    w_first: torch.Tensor  # [H1, D] (weight_dtype)
    b_first: torch.Tensor  # [H1] float32
    row_bias: Optional[torch.Tensor]  # [B, H1r] float32: replaces b_first[:H1r] per row
    target: torch.Tensor  # [B, C] float32
    loss_weight: torch.Tensor  # [B, C] float32
    requirement: torch.Tensor  # [B, C] int8: +1 above upper, -1 below lower, 0 free
    upper: torch.Tensor  # [C] float32
    lower: torch.Tensor  # [C] float32
    inv_sigma_sq: torch.Tensor  # [D] float32
    w_dist: float
    z_start: torch.Tensor  # [B, D] float32

    @property
    def rows(self) -> int:
        return self.z_start.shape[0]

    @property
    def dim(self) -> int:
        return self.z_start.shape[1]

    @property
    def first_width(self) -> int:
        return self.w_first.shape[0]

    @property
    def num_outputs(self) -> int:
        return self.target.shape[1]

    @property
    def row_bias_width(self) -> int:
        return 0 if self.row_bias is None else self.row_bias.shape[1]

    @property
    def weights_bf16(self) -> bool:
        return self.w_first.dtype == torch.bfloat16

    def native_args(
        self,
        module: Any,
        z_out: torch.Tensor,
        converged: torch.Tensor,
        steps_taken: torch.Tensor,
        logits: torch.Tensor,
        *,
        hyper: OptimizeHyperParams,
        tuning: OptimizeTuning,
        **extra: Any,
    ) -> Any:
        """``module.OptimizeLatentsArgs`` (csrc/bindings.cpp) for these inputs and outputs,
        filled by field name.

        Args:
            module: ``lcengine._C`` (or a build of the same bindings).
            z_out: final latents. # [B, D] float32
            converged: written 0/1. # [B] uint8
            steps_taken: written. # [B] int64
            logits: at the final latents. # [B, C] float32
            hyper: steps and Adam.
            tuning: its CPU and CUDA fields.
            **extra: more fields (``sgemm``, ``blas_set_threads_local``).

        The struct holds raw data pointers: the tensors must stay alive until the call returns.
        """
        rb = self.row_bias
        fields = dict(
            rows=self.rows,
            dim=self.dim,
            activations=[n.activation for n in self.nets],
            widths=[list(n.widths) for n in self.nets],
            weights=[[w.data_ptr() for w in n.weights] for n in self.nets],
            biases=[[v.data_ptr() for v in n.biases] for n in self.nets],
            w_first=self.w_first.data_ptr(),
            b_first=self.b_first.data_ptr(),
            first_width=self.first_width,
            row_bias=0 if rb is None else rb.data_ptr(),
            row_bias_width=self.row_bias_width,
            num_outputs=self.num_outputs,
            target=self.target.data_ptr(),
            loss_weight=self.loss_weight.data_ptr(),
            requirement=self.requirement.data_ptr(),
            upper=self.upper.data_ptr(),
            lower=self.lower.data_ptr(),
            inv_sigma_sq=self.inv_sigma_sq.data_ptr(),
            w_dist=float(self.w_dist),
            z_start=self.z_start.data_ptr(),
            z_out=z_out.data_ptr(),
            converged=converged.data_ptr(),
            steps_taken=steps_taken.data_ptr(),
            logits_out=logits.data_ptr(),
            steps=hyper.steps,
            lr=hyper.lr,
            beta1=hyper.beta1,
            beta2=hyper.beta2,
            eps=hyper.eps,
            weights_bf16=self.weights_bf16,
            **tuning.native_fields(),
            **extra,
        )
        return module.OptimizeLatentsArgs(**fields)


@torch.no_grad()
def prepare(
    critics: Critics,
    z_start: torch.Tensor,
    yf: torch.Tensor,
    mask: torch.Tensor,
    sigma_bar: Union[float, torch.Tensor],
    hyper: OptimizeHyperParams,
    *,
    realism_attributes: int,
    weight_dtype: torch.dtype = torch.float32,
) -> Prepared:
    """Builds the call's constant tensors on z_start's device (weights cast to weight_dtype,
    everything else float32). The critics' parameters must be on that device.

    Args:
        critics: from :func:`parse_critics`.
        z_start: starting latents. # [B, D]
        yf: requested values as floats. # [B, A]
        mask: requested attributes. # [B, A] bool
        sigma_bar: scale of the distance penalty. # [] or [D]
        hyper: the loss weights and thresholds (``w_*``, ``tau_*``).
        realism_attributes: leading columns of ``yf`` the realism critic reads.
        weight_dtype: ``torch.float32`` or ``torch.bfloat16``.
    """
    dev = z_start.device
    f32 = dict(dtype=torch.float32, device=dev)
    b, d = z_start.shape
    num_attr = yf.shape[1]
    real, emb, attrs = critics.realism, critics.embedding, critics.attributes

    def weight(w):
        return w.detach().to(weight_dtype).contiguous()

    def bias_of(w, bias):
        return (
            bias.detach().to(torch.float32) if bias is not None else torch.zeros(w.shape[0], **f32)
        ).contiguous()

    w0, b0 = real.layers[0]  # [H1r, D + E], [H1r]
    row_bias = None
    if emb is not None:
        e = emb(yf[:, :realism_attributes].to(emb.weight.dtype))  # [B, E]
        row_bias = (e @ w0[:, d:].t()).float()  # [B, H1r]
        if b0 is not None:
            row_bias = row_bias + b0.float()
        row_bias = row_bias.contiguous()
    nets = critics.nets
    w_first = torch.cat([weight(w0[:, :d])] + [weight(net.layers[0][0]) for net in attrs])
    b_first = torch.cat([bias_of(*net.layers[0]) for net in nets]).contiguous()  # [H1]
    prepared_nets, first, out = [], 0, 0
    for net in nets:
        widths = [d] + [w.shape[0] for w, _ in net.layers]
        prepared_nets.append(
            PreparedNet(
                ACTIVATION_CODES[net.activation],
                widths,
                [weight(w) for w, _ in net.layers[1:]],
                [bias_of(w, bias) for w, bias in net.layers[1:]],
                first,
                out,
            )
        )
        first += widths[1]
        out += widths[-1]

    ones = torch.ones(b, 1, **f32)  # [B, 1]
    maskf = mask.to(torch.float32)  # [B, A]
    target = torch.cat([ones, yf.to(torch.float32)], 1).contiguous()  # [B, C]
    loss_weight = torch.cat(
        [ones * hyper.w_realism, maskf * hyper.w_attr], 1
    ).contiguous()  # [B, C]
    side = torch.where(yf > 0.5, 1, -1).to(torch.int8) * mask.to(torch.int8)  # [B, A]
    requirement = torch.cat(
        [torch.ones(b, 1, dtype=torch.int8, device=dev), side], 1
    ).contiguous()  # [B, C]
    upper = torch.tensor([hyper.tau_r] + [hyper.tau_a] * num_attr, **f32)  # [C]
    lower = torch.tensor([0.0] + [1.0 - hyper.tau_a] * num_attr, **f32)  # [C]
    sb = torch.as_tensor(sigma_bar, dtype=torch.float64).detach().to(dev).reshape(-1)  # [1|D]
    inv_sigma_sq = (1.0 / (sb * sb)).to(torch.float32).expand(d).contiguous()  # [D]
    return Prepared(
        prepared_nets,
        w_first.contiguous(),
        b_first,
        row_bias,
        target,
        loss_weight,
        requirement,
        upper,
        lower,
        inv_sigma_sq,
        float(hyper.w_dist),
        z_start.detach().to(torch.float32).contiguous(),
    )
