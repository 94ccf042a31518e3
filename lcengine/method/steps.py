# SPDX-License-Identifier: Apache-2.0
"""Hand-derived training steps of the realism critic, the attribute critic and the actor.

Each step returns the gradients of its loss w.r.t. every weight of the trained network, computed
with explicit forward and backward matmuls instead of autograd. The realism critic's WGAN-GP
loss is the reason: through autograd it needs a double backward (``create_graph=True``), which
costs a second autograd graph per step and which ``torch.compile`` refuses (aot_autograd has no
double backward). For a critic whose activations are piecewise linear (``relu``,
``leaky_relu``) the penalty's weight gradient needs no second derivative of the activation:

* forward over ``[real; fake; mismatch; z_hat]`` (one stacked pass, ``4B`` rows), keeping each
  hidden layer's activation, whose sign gives the slopes ``m_k = act'(pre_k)`` (0/1 for ReLU);
* one backward pass over the same rows: the constraint loss's logit gradients on the first
  ``3B`` rows, ones (``d sum D / d logit``) on the ``z_hat`` rows, so the last ``B`` rows of
  each layer's delta are ``g_k = d D(z_hat) / d pre_k`` and ``u = g_0 W_0[:, :D]`` is
  ``grad_z D(z_hat, y)``;
* with the slopes held constant (exact: the activation's second derivative is zero wherever it
  exists), ``u = ((1 W_{n-1}) * m_{n-2} ... ) * m_0) W_0z`` is a product of the weights, so the
  penalty ``gp_weight * mean((|u| - 1)^2)`` adds ``g_k^T s_{k-1}`` to ``dW_k``, where
  ``s_{-1} = [v, 0]`` (``v = dgp/du``, zero on the embedding columns) and
  ``s_k = (s_{k-1} W_k^T) * m_k``; biases and the attribute embedding get nothing from it.

The attribute critic's and the actor's losses need no double backward; they are written the same
way (explicit forward/backward, no autograd graph) so one code path serves all three and every
step compiles (:func:`torch.compile` with ``compiled=True``; the kernels are pure tensor
functions). Networks follow the critic contract of :mod:`lcengine.method.critics` (``layers`` of
``nn.Linear`` with biases, optional ``y_embedding``). Other activations (``softplus``) raise
``ValueError``: their penalty gradient needs the activation's second derivative, so the trainer
keeps autograd for them (:func:`supports_hand_derived` says which). The autograd twins are in
:mod:`lcengine.reference.training`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lcengine.reference import LEAKY_SLOPE

# Activations whose second derivative is zero wherever it exists: the hand-derived steps' domain.
PIECEWISE_LINEAR = ("relu", "leaky_relu")

Tensors = tuple[torch.Tensor, ...]


@dataclass
class StepGrads:
    """What a hand-derived step returns.

    Attributes:
        grads: d loss / d parameter, in the order of ``net.parameters()`` of the trained network.
        loss: the total loss (0-d).
        parts: its terms (realism: ``bce``, ``gp``; actor: ``realism``, ``attribute``,
            ``distance``; attribute critic: ``bce``), 0-d each.
        logits: the critic logits of the batch (realism: ``[3B]``; attribute: ``[B, A]``;
            actor: the moved latents ``z'`` ``[N, D]``).
    """

    grads: Tensors
    loss: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)
    logits: Optional[torch.Tensor] = None


# ---------------------------------------------------------------------- network tensors


def supports_hand_derived(net: nn.Module) -> bool:
    """Whether ``net`` can be trained by the hand-derived steps (contract MLP, piecewise-linear
    activation)."""
    try:
        _unpack(net, "net")
    except (TypeError, ValueError):
        return False
    return True


def _param_names(net: nn.Module) -> list[str]:
    layers = getattr(net, "layers", None)
    names = []
    if getattr(net, "y_embedding", None) is not None:
        names += ["y_embedding.weight", "y_embedding.bias"]
    for i in range(len(layers)):
        names += [f"layers.{i}.weight", f"layers.{i}.bias"]
    return names


def _unpack(net: nn.Module, what: str) -> tuple:
    """``(emb_w, emb_b, weights, biases, activation)`` of a contract network, detached."""
    activation = getattr(net, "activation", None)
    layers = getattr(net, "layers", None)
    if not isinstance(layers, nn.ModuleList) or not all(
        type(m) is nn.Linear and m.bias is not None for m in layers
    ):
        raise TypeError(
            f"{what}: the hand-derived steps need an MLP with `layers` (nn.Linear with bias "
            f"only) and an optional `y_embedding`, got {type(net).__name__}"
        )
    if activation not in PIECEWISE_LINEAR:
        raise ValueError(
            f"{what}: the hand-derived steps need a piecewise-linear activation "
            f"{PIECEWISE_LINEAR}, got {activation!r}: its gradient penalty needs the "
            "activation's second derivative; train it with autograd "
            "(lcengine.reference.training)"
        )
    emb = getattr(net, "y_embedding", None)
    if emb is not None and (type(emb) is not nn.Linear or emb.bias is None):
        raise TypeError(f"{what}: y_embedding must be an nn.Linear with bias")
    names = _param_names(net)
    if [n for n, _ in net.named_parameters()] != names:
        raise TypeError(
            f"{what}: parameters {[n for n, _ in net.named_parameters()]} are not the "
            f"contract's {names}"
        )
    weights = tuple(m.weight.detach() for m in layers)
    biases = tuple(m.bias.detach() for m in layers)
    if emb is None:
        return None, None, weights, biases, activation
    return emb.weight.detach(), emb.bias.detach(), weights, biases, activation


def apply_grads(net: nn.Module, grads: Sequence[torch.Tensor]) -> None:
    """Sets ``p.grad`` of every parameter of ``net`` (in ``net.parameters()`` order), in the
    parameter's dtype (gradients computed under bfloat16 autocast are cast back)."""
    params = list(net.parameters())
    if len(params) != len(grads):
        raise ValueError(f"{len(grads)} gradients for {len(params)} parameters")
    for p, g in zip(params, grads, strict=True):
        p.grad = g.to(p.dtype)


# ---------------------------------------------------------------------- kernels (pure tensors)


def _act(pre: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "relu":
        return F.relu(pre)
    return F.leaky_relu(pre, LEAKY_SLOPE)


def _masked(grad: torch.Tensor, out: torch.Tensor, activation: str) -> torch.Tensor:
    """``grad * act'(pre)`` from the activation's output ``out`` (the slopes are read off its
    sign, as autograd's own ReLU backward does; no mask is stored)."""
    if activation == "relu":
        return torch.ops.aten.threshold_backward(grad, out, 0)
    return torch.ops.aten.leaky_relu_backward(grad, out, LEAKY_SLOPE, True)


def _forward(
    weights: Tensors, biases: Tensors, h: torch.Tensor, activation: str
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Inputs of every layer (``inputs[k + 1]`` = hidden layer k's activation) and the output.
    # [R, in_k] per layer, [R, O]"""
    inputs = []
    last = len(weights) - 1
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        inputs.append(h)
        h = F.linear(h, w, b)  # [R, H_k]
        if k < last:
            h = _act(h, activation)
    return inputs, h


def _backward(weights: Tensors, inputs: list, top: torch.Tensor, activation: str) -> list:
    """Deltas ``d L / d pre_k`` of every layer, from the output's gradient ``top``."""
    deltas = [top]
    d = top
    for k in range(len(weights) - 1, 0, -1):
        d = _masked(d @ weights[k], inputs[k], activation)  # [R, H_{k-1}]
        deltas.append(d)
    deltas.reverse()
    return deltas


def _weight_grads(deltas: list, inputs: list) -> list[torch.Tensor]:
    out = []
    for d, a in zip(deltas, inputs, strict=True):
        out += [d.t() @ a, d.sum(0)]
    return out


def _embed(z: torch.Tensor, y: torch.Tensor, emb_w, emb_b) -> torch.Tensor:
    if emb_w is None:
        return z
    return torch.cat([z, F.linear(y.to(z.dtype), emb_w, emb_b)], dim=1)  # [R, D + E]


def _embedding_grads(grad_in: torch.Tensor, y: torch.Tensor, dim: int, emb_w) -> list:
    if emb_w is None:
        return []
    de = grad_in[:, dim:]  # [R, E]
    return [de.t() @ y.to(de.dtype), de.sum(0)]


def _bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def realism_grads_kernel(
    emb_w: Optional[torch.Tensor],
    emb_b: Optional[torch.Tensor],
    weights: Tensors,
    biases: Tensors,
    z_real: torch.Tensor,
    z_fake: torch.Tensor,
    z_mis: torch.Tensor,
    y_real: torch.Tensor,
    y_mis: torch.Tensor,
    differs: torch.Tensor,
    alpha: torch.Tensor,
    gp_weight: float,
    activation: str,
) -> tuple:
    """The realism step on plain tensors (see the module docstring); compile-friendly.

    Returns:
        ``(grads, bce, gp, logits)``: grads as ``(emb_w, emb_b,) W_0, b_0, ...``.
    """
    b, d = z_real.shape
    z_hat = alpha * z_real + (1.0 - alpha) * z_fake  # [B, D]
    z4 = torch.cat([z_real, z_fake, z_mis, z_hat])  # [4B, D]
    y4 = torch.cat([y_real, y_real, y_mis, y_real])  # [4B, A]
    inputs, out = _forward(weights, biases, _embed(z4, y4, emb_w, emb_b), activation)
    logits = out[: 3 * b, 0]  # [3B]
    dt = logits.dtype
    target = torch.cat([torch.ones(b, dtype=dt, device=logits.device), logits.new_zeros(2 * b)])
    weight = torch.cat([torch.ones(2 * b, dtype=dt, device=logits.device), differs.to(dt)])
    bce = (weight * _bce(logits, target)).mean()
    dlogit = weight * (torch.sigmoid(logits) - target) / (3 * b)  # [3B]
    top = torch.cat([dlogit[:, None], torch.ones_like(out[3 * b :])])  # [4B, 1]
    deltas = _backward(weights, inputs, top, activation)
    grad_in = deltas[0] @ weights[0]  # [4B, D + E]
    u = grad_in[3 * b :, :d]  # grad_z D(z_hat, y) # [B, D]
    norm = u.norm(dim=1)  # [B]
    gp = ((norm - 1.0) ** 2).mean()
    coef = torch.where(norm > 0, 2.0 * (norm - 1.0) / norm.clamp_min(1e-30), 0.0) / b  # [B]
    s = coef[:, None] * u  # d gp / d u # [B, D]
    if emb_w is not None:
        s = torch.cat([s, s.new_zeros(b, emb_w.shape[0])], dim=1)  # [B, D + E]
    grads = _embedding_grads(grad_in[: 3 * b], y4[: 3 * b], d, emb_w)
    last = len(weights) - 1
    for k, (delta, a) in enumerate(zip(deltas, inputs, strict=True)):
        # one GEMM over 4B rows: [delta_bce; g]^T [a; gp_weight s]
        dw = delta.t() @ torch.cat([a[: 3 * b], gp_weight * s])
        grads += [dw, delta[: 3 * b].sum(0)]
        if k < last:
            s = _masked(s @ weights[k].t(), inputs[k + 1][3 * b :], activation)  # [B, H_k]
    return tuple(grads), bce, gp, logits


def attribute_grads_kernel(
    weights: Tensors, biases: Tensors, z: torch.Tensor, y: torch.Tensor, activation: str
) -> tuple:
    """The attribute critic's step on plain tensors: mean BCE of ``D_attr(z)`` against ``y``.

    Returns:
        ``(grads, loss, logits)``.
    """
    inputs, logits = _forward(weights, biases, z, activation)  # [B, A]
    y = y.to(logits.dtype)
    loss = _bce(logits, y).mean()
    top = (torch.sigmoid(logits) - y) / logits.numel()  # [B, A]
    grads = _weight_grads(_backward(weights, inputs, top, activation), inputs)
    return tuple(grads), loss, logits


def _input_grad(weights, biases, emb_w, emb_b, z, y, top_fn, activation) -> tuple:
    """A critic's value and ``d L / d z`` for a loss of its output given by ``top_fn``."""
    inputs, out = _forward(weights, biases, _embed(z, y, emb_w, emb_b), activation)
    loss, top = top_fn(out)
    deltas = _backward(weights, inputs, top, activation)
    return loss, (deltas[0] @ weights[0])[:, : z.shape[1]]


def actor_grads_kernel(
    actor: tuple,
    realism: tuple,
    attribute: Optional[tuple],
    z_in: torch.Tensor,
    y_in: torch.Tensor,
    sigma_bar: torch.Tensor,
    attribute_weight: float,
    lambda_dist: float,
) -> tuple:
    """The actor's step on plain tensors; each network as ``(emb_w, emb_b, weights, biases,
    activation)`` (the attribute critic's embedding ``None``; ``attribute`` None: no term).

    Returns:
        ``(grads, loss, realism_loss, attribute_loss, distance, z_out)``.
    """
    a_ew, a_eb, a_w, a_b, a_act = actor
    n, d = z_in.shape
    inputs, out = _forward(a_w, a_b, _embed(z_in, y_in, a_ew, a_eb), a_act)  # [N, 2D]
    dz, gates = out[:, :d], torch.sigmoid(out[:, d:])  # [N, D] x2
    z_out = (1.0 - gates) * z_in + gates * dz  # [N, D]
    y = y_in.to(z_out.dtype)

    def realism_top(o):  # constraint_loss(D(z', y), 1), mean over rows
        lg = o[:, 0]
        return _bce(lg, torch.ones_like(lg)).mean(), (torch.sigmoid(o) - 1.0) / n

    r_ew, r_eb, r_w, r_b, r_act = realism
    realism_loss, g_out = _input_grad(r_w, r_b, r_ew, r_eb, z_out, y, realism_top, r_act)
    if attribute is not None and attribute_weight > 0:

        def attribute_top(o):
            return _bce(o, y).mean(), attribute_weight * (torch.sigmoid(o) - y) / o.numel()

        _, _, t_w, t_b, t_act = attribute
        attribute_loss, g_attr = _input_grad(t_w, t_b, None, None, z_out, y, attribute_top, t_act)
        g_out = g_out + g_attr
    else:
        attribute_loss = z_out.new_zeros(())
    sb2 = sigma_bar.to(z_out.dtype) ** 2  # [] or [D]
    diff = z_out - z_in  # [N, D]
    distance = (torch.log1p(diff * diff) / sb2).mean()
    g_out = g_out + (lambda_dist * 2.0 / (n * d)) * diff / ((1.0 + diff * diff) * sb2)  # [N, D]
    loss = realism_loss + attribute_weight * attribute_loss + lambda_dist * distance
    top = torch.cat([g_out * gates, g_out * (dz - z_in) * gates * (1.0 - gates)], dim=1)
    deltas = _backward(a_w, inputs, top, a_act)  # [N, 2D] at the top
    grads = _embedding_grads(deltas[0] @ a_w[0], y, d, a_ew) + _weight_grads(deltas, inputs)
    return tuple(grads), loss, realism_loss, attribute_loss, distance, z_out


# ---------------------------------------------------------------------- public steps

_COMPILED: dict[str, Callable] = {}
_KERNELS = {
    "realism": realism_grads_kernel,
    "attribute": attribute_grads_kernel,
    "actor": actor_grads_kernel,
}


def compiled_kernel(name: str) -> Callable:
    """``torch.compile(<name>_grads_kernel, dynamic=False)``, made once per process (a new
    shape, dtype or activation recompiles it)."""
    if name not in _COMPILED:
        _COMPILED[name] = torch.compile(_KERNELS[name], dynamic=False)
    return _COMPILED[name]


def _kernel(name: str, compiled: bool) -> Callable:
    return compiled_kernel(name) if compiled else _KERNELS[name]


def realism_step_grads(
    critic: nn.Module,
    z_real: torch.Tensor,
    z_fake: torch.Tensor,
    z_mis: torch.Tensor,
    y_real: torch.Tensor,
    y_mis: torch.Tensor,
    differs: torch.Tensor,
    alpha: torch.Tensor,
    *,
    gp_weight: float,
    compiled: bool = False,
) -> StepGrads:
    """Gradients of the realism critic's loss, ``constraint_loss`` (real block 1, fake and
    mismatch blocks 0, mismatch rows weighted by ``differs``) + ``gp_weight`` * WGAN-GP on
    ``z_hat = alpha z_real + (1 - alpha) z_fake`` (the loss of
    ``ConstraintTrainer._realism_update``).

    Args:
        critic: a :class:`~lcengine.method.critics.RealismCritic` (or contract MLP) with a
            piecewise-linear activation.
        z_real, z_fake, z_mis: the three blocks. # [B, D] each
        y_real: attributes of the real (and fake) block. # [B, A]
        y_mis: borrowed attributes of the mismatch block. # [B, A]
        differs: 1 where the borrowed attributes differ from the row's own. # [B]
        alpha: interpolation weights. # [B, 1]
        gp_weight: weight of the penalty.
        compiled: run the :func:`torch.compile`'d kernel.

    Returns:
        :class:`StepGrads` with parts ``bce``, ``gp`` and the logits ``[3B]``.

    Raises:
        ValueError: a non piecewise-linear activation. TypeError: not a contract MLP.
    """
    ew, eb, w, bias, act = _unpack(critic, "realism critic")
    with torch.no_grad():
        grads, bce, gp, logits = _kernel("realism", compiled)(
            ew, eb, w, bias, z_real, z_fake, z_mis, y_real, y_mis, differs, alpha,
            float(gp_weight), act,
        )  # fmt: skip
    return StepGrads(grads, bce + gp_weight * gp, {"bce": bce, "gp": gp}, logits)


def attribute_step_grads(
    critic: nn.Module, z: torch.Tensor, y: torch.Tensor, *, compiled: bool = False
) -> StepGrads:
    """Gradients of the attribute critic's loss, mean ``constraint_loss(D_attr(z), y)``.

    Args:
        critic: an :class:`~lcengine.method.critics.AttributeCritic` (piecewise-linear).
        z: latents. # [B, D]
        y: 0/1 attributes. # [B, A]
        compiled: run the :func:`torch.compile`'d kernel.
    """
    _, _, w, bias, act = _unpack(critic, "attribute critic")
    with torch.no_grad():
        grads, loss, logits = _kernel("attribute", compiled)(w, bias, z, y, act)
    return StepGrads(grads, loss, {"bce": loss}, logits)


def actor_step_grads(
    actor: nn.Module,
    realism: nn.Module,
    attribute: nn.Module,
    z_in: torch.Tensor,
    y_in: torch.Tensor,
    sigma_bar: torch.Tensor,
    *,
    attribute_weight: float,
    lambda_dist: float,
    compiled: bool = False,
) -> StepGrads:
    """Gradients w.r.t. the actor's weights of ``ConstraintTrainer.actor_loss``:
    ``constraint_loss(D(z', y), 1) + attribute_weight * constraint_loss(D_attr(z'), y) +
    lambda_dist * distance_penalty(z', z, sigma_bar)``, ``z' = G(z, y)`` (gated).

    Args:
        actor: an :class:`~lcengine.method.critics.Actor` (piecewise-linear trunk).
        realism, attribute: the critics (piecewise-linear).
        z_in: actor inputs. # [N, D]
        y_in: requested attributes. # [N, A]
        sigma_bar: per-dimension encoder scale. # [] or [D]
        attribute_weight, lambda_dist: the loss weights.
        compiled: run the :func:`torch.compile`'d kernel.

    Returns:
        :class:`StepGrads` with parts ``realism``, ``attribute``, ``distance``; ``logits`` holds
        ``z'``.
    """
    a = _unpack(actor, "actor")
    r = _unpack(realism, "realism critic")
    t = _unpack(attribute, "attribute critic") if attribute_weight > 0 else None
    sb = torch.as_tensor(sigma_bar, dtype=z_in.dtype, device=z_in.device)
    with torch.no_grad():
        grads, loss, rl, al, dist, z_out = _kernel("actor", compiled)(
            a, r, t, z_in, y_in, sb, float(attribute_weight), float(lambda_dist)
        )
    return StepGrads(grads, loss, {"realism": rl, "attribute": al, "distance": dist}, z_out)


__all__ = [
    "PIECEWISE_LINEAR",
    "StepGrads",
    "actor_grads_kernel",
    "actor_step_grads",
    "apply_grads",
    "attribute_grads_kernel",
    "attribute_step_grads",
    "compiled_kernel",
    "realism_grads_kernel",
    "realism_step_grads",
    "supports_hand_derived",
]
