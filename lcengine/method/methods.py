# SPDX-License-Identifier: Apache-2.0
"""The ways of generating, as names: what ``lcengine sample --method`` offers.

A torch-free module, so that the command parsers (:mod:`lcengine.method.commands`) load no
torch; :mod:`lcengine.method.sampling` re-exports it.
"""

# Raw prior samples (the unconstrained reference), one pass of the actor, gradient-based
# optimization of the latents, and attribute-vector arithmetic.
METHODS = ("prior", "actor", "optimize", "baseline")

__all__ = ["METHODS"]
