# SPDX-License-Identifier: Apache-2.0
"""Names the command parsers offer: the ways of generating (``lcengine sample --method``) and
the optimizer's starting points (``lcengine sample --start``) and the training's autocast modes
(``lcengine fit --autocast``).

A torch-free module, so that the command parsers (:mod:`lcengine.method.commands`) load no
torch; :mod:`lcengine.method.sampling` re-exports ``METHODS``, :mod:`lcengine.method.config`
``AUTOCAST_MODES`` and ``OPTIMIZER_STARTS``.
"""

# Raw prior samples (the unconstrained reference), one pass of the actor, gradient-based
# optimization of the latents, and attribute-vector arithmetic.
METHODS = ("prior", "actor", "optimize", "baseline")

# SamplingConfig.start: the optimizer starts from the given latents or from the actor's output.
OPTIMIZER_STARTS = ("latents", "actor")

# TrainingConfig.autocast: float32 throughout, or the updates' products in bfloat16.
AUTOCAST_MODES = ("off", "bf16")

__all__ = ["AUTOCAST_MODES", "METHODS", "OPTIMIZER_STARTS"]
