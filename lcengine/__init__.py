# SPDX-License-Identifier: Apache-2.0
"""lcengine: latent constraints (Engel, Hoffman & Roberts, ICLR 2018) on fused kernels.

Public ops (each with ``backend=`` "auto" | "eager" | "native" | "triton"):
:func:`reparameterize`, :func:`standard_normal`, :func:`gaussian_kl`, :func:`distance_penalty`,
:func:`constraint_loss`, :func:`latent_adam_`, :func:`optimize_latents` (returns
:class:`OptimizeResult`; settings :class:`OptimizeHyperParams`, :class:`OptimizeTuning`,
:func:`optimize_tuning`). Backend selection: :func:`use_backend`,
``LCENGINE_BACKEND``; what was built: :func:`build_info`. The method itself lives in
:mod:`lcengine.method`.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("lcengine")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from .backend import BACKENDS, build_info, use_backend
from .ops import (
    OptimizeHyperParams,
    OptimizeResult,
    OptimizeTuning,
    constraint_loss,
    distance_penalty,
    gaussian_kl,
    latent_adam_,
    optimize_latents,
    optimize_tuning,
    reparameterize,
    standard_normal,
)

__all__ = [
    "BACKENDS",
    "OptimizeHyperParams",
    "OptimizeResult",
    "OptimizeTuning",
    "__version__",
    "build_info",
    "constraint_loss",
    "distance_penalty",
    "gaussian_kl",
    "latent_adam_",
    "optimize_latents",
    "optimize_tuning",
    "reparameterize",
    "standard_normal",
    "use_backend",
]
