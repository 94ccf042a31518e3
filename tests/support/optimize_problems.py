# SPDX-License-Identifier: Apache-2.0
"""Problems and assertions shared by the latent optimizer's tests (CPU, CUDA, CUDA emulation).

The critics are :class:`lcengine.reference.CriticMLP`, the critic contract in its plainest form,
and :class:`CriticStack`, several of them read as one attribute critic.
"""

from typing import Optional, Sequence

import torch
from torch import nn

import lcengine
from lcengine.reference import CriticMLP

TIE = 1e-4  # a probability this close to its threshold may fall either way between backends


class CriticStack(nn.Module):
    """Attribute critics read as one: their logits concatenated in order (the ``CriticStack``
    contract of ``lcengine.ops.optimize_latents.prepare``)."""

    def __init__(self, critics: Sequence[CriticMLP]) -> None:
        super().__init__()
        self.critics = nn.ModuleList(critics)
        self.latent_dim = critics[0].latent_dim
        self.num_attributes = sum(c.num_attributes for c in critics)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Concatenated logits. # [B, D] -> [B, sum A_i]"""
        return torch.cat([c(z) for c in self.critics], dim=1)


def make_problem(
    b: int,
    d: int,
    hidden: Sequence[int],
    activation: str,
    *,
    a: int = 4,
    a_real: Optional[int] = None,
    seed: int = 0,
    sharpen: float = 4.0,
    stacked: bool = False,
) -> tuple:
    """Small random critics whose logits move fast with z (``sharpen`` scales the last layers),
    so that rows converge at different steps under the default thresholds.

    Returns:
        ``(z [B, D], y [B, A] float 0/1, mask [B, A] bool, realism critic, attribute critic)``;
        the realism critic reads the first ``a_real`` columns (default all) through a 3-wide
        embedding; ``stacked``: the attribute critic is a stack of an ``a - 1``-logit critic
        and a 1-logit critic with one hidden layer.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    a_real = a if a_real is None else a_real
    real = CriticMLP(d, hidden, 1, activation, num_attributes=a_real, embed_dim=3)
    if stacked:
        attr = CriticStack(
            [CriticMLP(d, hidden, a - 1, activation), CriticMLP(d, hidden[:1], 1, activation)]
        )
        lasts = [c.layers[-1] for c in attr.critics]
    else:
        attr = CriticMLP(d, hidden, a, activation)
        lasts = [attr.layers[-1]]
    with torch.no_grad():
        for layer in [real.layers[-1]] + lasts:
            layer.weight.mul_(sharpen)
    z = torch.randn(b, d, generator=g)  # [B, D]
    y = (torch.rand(b, a, generator=g) > 0.5).float()  # [B, A]
    mask = torch.rand(b, a, generator=g) > 0.4  # [B, A]
    return z, y, mask, real, attr


def assert_same_run(
    out,
    ref,
    y: torch.Tensor,
    mask: torch.Tensor,
    *,
    tau_r: float = 0.5,
    tau_a: float = 0.5,
    rtol: float = 1e-4,
) -> None:
    """Steps and convergence agree except at a threshold tie; latents within rtol (fp32)."""
    same = (out.steps == ref.steps) & (out.converged == ref.converged)  # [B]
    if not bool(same.all()):
        bad = (~same).nonzero().squeeze(1)
        p_r = ref.realism_prob[bad]
        p_a = ref.attribute_prob[bad]
        near_r = (p_r - tau_r).abs() < TIE
        thr = torch.where(
            y[bad] > 0.5, torch.full_like(p_a, tau_a), torch.full_like(p_a, 1 - tau_a)
        )
        near_a = (((p_a - thr).abs() < TIE) & mask[bad]).any(1)
        assert bool((near_r | near_a).all()), (
            f"rows {bad.tolist()} differ without a threshold tie: steps {out.steps[bad].tolist()}"
            f" vs {ref.steps[bad].tolist()}"
        )
    scale = ref.latents[same].abs().max().clamp_min(1.0) if bool(same.any()) else 1.0
    torch.testing.assert_close(
        out.latents[same], ref.latents[same], rtol=rtol, atol=rtol * float(scale)
    )
    torch.testing.assert_close(out.realism_prob[same], ref.realism_prob[same], rtol=0, atol=1e-4)
    torch.testing.assert_close(
        out.attribute_prob[same], ref.attribute_prob[same], rtol=0, atol=1e-4
    )
    assert out.latents.dtype == torch.float32 and out.converged.dtype == torch.bool
    assert out.steps.dtype == torch.int64


def on(device, *tensors_or_modules) -> list:
    """Every argument moved to ``device`` (modules in place)."""
    return [t.to(device) for t in tensors_or_modules]


def to_cpu(out) -> "lcengine.OptimizeResult":
    """An :class:`lcengine.OptimizeResult` with every tensor on the CPU."""
    return lcengine.OptimizeResult(
        *(
            getattr(out, f).cpu()
            for f in ("latents", "converged", "steps", "realism_prob", "attribute_prob")
        ),
        out.backend,
    )


def _bf16_weights_of(critic: nn.Module, dim: Optional[int] = None) -> nn.Module:
    """The critic with the weights that ``weight_dtype=torch.bfloat16`` stores in bf16 rounded
    to bf16-representable float32 values, in place: every ``layers`` weight, except the
    y-embedding columns (index >= dim) of the first layer, which fold into a float32 row bias.
    The float32 reference on the result computes what the bf16 kernels compute."""
    subs = getattr(critic, "critics", None)
    nets = list(subs) if subs is not None and getattr(critic, "layers", None) is None else [critic]
    with torch.no_grad():
        for net in nets:
            for i, layer in enumerate(net.layers):
                w = layer.weight if i > 0 or dim is None else layer.weight[:, :dim]
                w.copy_(w.to(torch.bfloat16).to(torch.float32))
    return critic
