# SPDX-License-Identifier: Apache-2.0
"""What every fused optimizer reads: the critics' structure and the per-call constant tensors.

``parse_critics`` checks the critics against the ``lcengine.method.critics`` contract (an
``nn.ModuleList`` ``layers`` of ``nn.Linear``, a string ``activation`` between them, the realism
critic's optional ``y_embedding`` concatenated after ``z``, attribute critics either such an MLP
or a stack of them in ``critics``). ``prepare`` turns them and the request into the flat tensors
that the native CPU loop, the CUDA loop and the Triton loop all consume (csrc/lcengine_ops.h,
``OptimizeLatentsArgs``, states their meaning):

* the realism critic's embedding of the fixed ``y`` and its share of ``layers[0]`` fold into a
  per-row first-layer bias ``row_bias`` [B, H1r], computed once;
* every critic's first layer reads the same ``z``: one stacked ``w_first`` [H1, D];
* logit column 0 is realism (target 1, weight w_r, must exceed tau_r); columns 1..A are the
  attributes (weight w_a * mask, side +1/-1 for requested 1/0, 0 when not requested).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import nn

ACTIVATION_CODES = {"relu": 0, "softplus": 1, "leaky_relu": 2}


@dataclass
class Net:
    activation: str
    layers: list  # [(weight [out, in], bias [out] or None)]


@dataclass
class Critics:
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


def _mlp(module: Any, name: str) -> Net:
    layers = getattr(module, "layers", None)
    if not isinstance(layers, (nn.ModuleList, list, tuple)) or len(layers) == 0:
        raise TypeError(f"{name} must hold its layers in a non-empty nn.ModuleList `layers` of "
                        f"nn.Linear (the lcengine.method.critics contract), got "
                        f"{type(layers).__name__}")
    for i, layer in enumerate(layers):
        if type(layer) is not nn.Linear:
            raise TypeError(f"{name}.layers[{i}] is {type(layer).__name__}; the fused optimizer "
                            "supports nn.Linear layers only")
    activation = getattr(module, "activation", None)
    if activation not in ACTIVATION_CODES:
        raise ValueError(f"{name}.activation must be one of {tuple(ACTIVATION_CODES)}, got "
                         f"{activation!r}")
    if len(layers) < 2:
        raise ValueError(f"{name} has a single Linear layer; the fused optimizer needs at least "
                         "one hidden layer")
    for i in range(1, len(layers)):
        if layers[i].in_features != layers[i - 1].out_features:
            raise ValueError(f"{name}.layers[{i}] reads {layers[i].in_features} features but "
                             f"layers[{i - 1}] gives {layers[i - 1].out_features}")
    return Net(activation, [(layer.weight, layer.bias) for layer in layers])


def _attribute_nets(critic: Any) -> list:
    subs = getattr(critic, "critics", None)
    if subs is not None and getattr(critic, "layers", None) is None:
        return [_mlp(c, f"attribute_critic.critics[{i}]") for i, c in enumerate(subs)]
    return [_mlp(critic, "attribute_critic")]


def parse_critics(realism_critic: Any, attribute_critic: Any, dim: int, num_attr: int,
                  realism_attributes: int) -> Critics:
    """Parses both critics and checks every width against D, A and realism_attributes.

    Raises:
        TypeError: a critic that does not follow the structural contract.
        ValueError: one that follows it but whose widths disagree with the request.
    """
    real = _mlp(realism_critic, "realism_critic")
    emb = getattr(realism_critic, "y_embedding", None)
    if emb is not None and type(emb) is not nn.Linear:
        raise TypeError(f"realism_critic.y_embedding must be an nn.Linear, got "
                        f"{type(emb).__name__}")
    embed = emb.out_features if emb is not None else 0
    if real.layers[0][0].shape[1] != dim + embed:
        extra = f" plus a {embed}-wide y embedding" if embed else ""
        raise ValueError(f"realism_critic.layers[0] reads {real.layers[0][0].shape[1]} features "
                         f"but z has D={dim}{extra}")
    if emb is not None and emb.in_features != realism_attributes:
        raise ValueError(f"realism_critic.y_embedding reads {emb.in_features} attributes but "
                         f"realism_attributes is {realism_attributes}")
    if real.layers[-1][0].shape[0] != 1:
        raise ValueError(f"realism_critic must output one logit per row, its last layer gives "
                         f"{real.layers[-1][0].shape[0]}")
    attrs = _attribute_nets(attribute_critic)
    for i, net in enumerate(attrs):
        if net.layers[0][0].shape[1] != dim:
            raise ValueError(f"attribute critic {i} reads {net.layers[0][0].shape[1]} features "
                             f"but z has D={dim}")
    outputs = sum(net.layers[-1][0].shape[0] for net in attrs)
    if outputs != num_attr:
        raise ValueError(f"attribute_critic outputs {outputs} logits but y has A={num_attr} "
                         "columns")
    return Critics(real, emb, attrs)


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

    def native_args(self, z_out: torch.Tensor, converged: torch.Tensor,
                    steps_taken: torch.Tensor, logits: torch.Tensor, *, steps: int, lr: float,
                    beta1: float, beta2: float, eps: float) -> tuple:
        """The leading arguments of ``_C.optimize_latents_cpu`` / ``_cuda`` (csrc/bindings.cpp)
        for these inputs and the given outputs (z_out [B, D] float32, converged [B] uint8,
        steps_taken [B] int64, logits [B, C] float32): the one place their order lives. The
        tensors must stay alive until the call returns."""
        rb = self.row_bias
        return ([n.activation for n in self.nets], [list(n.widths) for n in self.nets],
                [[0] + [w.data_ptr() for w in n.weights] for n in self.nets],
                [[0] + [v.data_ptr() for v in n.biases] for n in self.nets],
                self.w_first.data_ptr(), self.b_first.data_ptr(), self.first_width,
                0 if rb is None else rb.data_ptr(), self.row_bias_width, self.num_outputs,
                self.target.data_ptr(), self.loss_weight.data_ptr(), self.requirement.data_ptr(),
                self.upper.data_ptr(), self.lower.data_ptr(), self.inv_sigma_sq.data_ptr(),
                float(self.w_dist), self.z_start.data_ptr(), z_out.data_ptr(),
                converged.data_ptr(), steps_taken.data_ptr(), logits.data_ptr(), self.rows,
                self.dim, int(steps), float(lr), float(beta1), float(beta2), float(eps))


@torch.no_grad()
def prepare(critics: Critics, z_start: torch.Tensor, yf: torch.Tensor, mask: torch.Tensor,
            sigma_bar: Union[float, torch.Tensor], *, w_realism: float, w_attr: float,
            w_dist: float, tau_r: float, tau_a: float, realism_attributes: int,
            weight_dtype: torch.dtype = torch.float32) -> Prepared:
    """Builds the call's constant tensors on z_start's device (weights cast to weight_dtype,
    everything else float32). The critics' parameters must be on that device."""
    dev = z_start.device
    f32 = dict(dtype=torch.float32, device=dev)
    b, d = z_start.shape
    num_attr = yf.shape[1]
    real, emb, attrs = critics.realism, critics.embedding, critics.attributes

    def weight(w):
        return w.detach().to(weight_dtype).contiguous()

    def bias_of(w, bias):
        return (bias.detach().to(torch.float32) if bias is not None
                else torch.zeros(w.shape[0], **f32)).contiguous()

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
        prepared_nets.append(PreparedNet(
            ACTIVATION_CODES[net.activation], widths,
            [weight(w) for w, _ in net.layers[1:]],
            [bias_of(w, bias) for w, bias in net.layers[1:]], first, out))
        first += widths[1]
        out += widths[-1]

    ones = torch.ones(b, 1, **f32)  # [B, 1]
    maskf = mask.to(torch.float32)  # [B, A]
    target = torch.cat([ones, yf.to(torch.float32)], 1).contiguous()  # [B, C]
    loss_weight = torch.cat([ones * w_realism, maskf * w_attr], 1).contiguous()  # [B, C]
    side = torch.where(yf > 0.5, 1, -1).to(torch.int8) * mask.to(torch.int8)  # [B, A]
    requirement = torch.cat([torch.ones(b, 1, dtype=torch.int8, device=dev), side],
                            1).contiguous()  # [B, C]
    upper = torch.tensor([tau_r] + [tau_a] * num_attr, **f32)  # [C]
    lower = torch.tensor([0.0] + [1.0 - tau_a] * num_attr, **f32)  # [C]
    sb = torch.as_tensor(sigma_bar, dtype=torch.float64).detach().to(dev).reshape(-1)
    inv_sigma_sq = (1.0 / (sb * sb)).to(torch.float32).expand(d).contiguous()  # [D]
    return Prepared(prepared_nets, w_first.contiguous(), b_first, row_bias, target, loss_weight,
                    requirement, upper, lower, inv_sigma_sq, float(w_dist),
                    z_start.detach().to(torch.float32).contiguous())
