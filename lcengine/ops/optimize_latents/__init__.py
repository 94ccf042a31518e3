# SPDX-License-Identifier: Apache-2.0
"""The fused critic-gradient latent optimizer ``optimize_latents`` (many Adam steps per call).

Modules, in the order a call goes through them:

* :mod:`.op`: the public op: validation, the choice of backend, dispatch; the eager path;
* :mod:`.config`: :class:`OptimizeHyperParams` (what is computed, handed to every runner) and
  :class:`OptimizeTuning` (how the fused runners compute; ``LCENGINE_OPTIMIZE_*`` variables,
  :func:`optimize_tuning`, the op's ``tuning=``);
* :mod:`.prepare`: the critic contract (:class:`CriticNet`, :class:`RealismCriticNet`,
  :class:`CriticStack`) and the critics as flat tensors, shared by every fused runner;
* one runner per fused path: :mod:`.cpu` (``_C.optimize_latents_cpu``), :mod:`.cuda`
  (``_C.optimize_latents_cuda``), :mod:`.triton` (the step loop over ``lcengine._triton.optimize``).
"""

from .config import (
    OptimizeHyperParams,
    OptimizeTuning,
    current_tuning,
    optimize_tuning,
)
from .op import OptimizeResult, optimize_latents
from .prepare import CriticNet, CriticStack, RealismCriticNet

__all__ = [
    "CriticNet",
    "CriticStack",
    "OptimizeHyperParams",
    "OptimizeResult",
    "OptimizeTuning",
    "RealismCriticNet",
    "current_tuning",
    "optimize_latents",
    "optimize_tuning",
]
