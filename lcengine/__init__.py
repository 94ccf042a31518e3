# SPDX-License-Identifier: Apache-2.0
"""lcengine: latent constraints (Engel, Hoffman & Roberts, ICLR 2018) on fused kernels.

Public ops (each with ``backend=`` "auto" | "eager" | "native" | "triton"):
:func:`reparameterize`, :func:`standard_normal`, :func:`gaussian_kl`, :func:`distance_penalty`,
:func:`constraint_loss`, :func:`latent_adam_`, :func:`optimize_latents` (returns
:class:`OptimizeResult`; settings :class:`OptimizeHyperParams`, :class:`OptimizeTuning`,
:func:`optimize_tuning`). Backend selection: :func:`use_backend`,
``LCENGINE_BACKEND``; what was built: :func:`build_info`. The method itself lives in
:mod:`lcengine.method`.

The names are imported on first access (PEP 562), so that ``import lcengine`` alone (what the
``lcengine`` command's parser needs) loads no torch. The custom ops ``torch.ops.lcengine.*`` are
registered when :mod:`lcengine.ops` is imported: on first access to an op, by
``import lcengine.ops``, or right away by ``import lcengine`` when torch is already imported.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ._lazy import lazy_package

if TYPE_CHECKING:  # the real imports, for type checkers and IDEs
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

    __version__: str

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

_EXPORTS = {name: ".backend" for name in ("BACKENDS", "build_info", "use_backend")}
_EXPORTS.update(
    (name, ".ops") for name in __all__ if name not in _EXPORTS and name != "__version__"
)
_SUBMODULES = ("apps", "backend", "benchmarks", "cli", "method", "ops", "reference", "validation")
_getattr, _dir = lazy_package(__name__, globals(), _EXPORTS, _SUBMODULES)


def __dir__() -> list[str]:
    return sorted(set(_dir()) | {"__version__"})


def __getattr__(name: str):
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("lcengine")
        except PackageNotFoundError:  # running from a source tree that was never installed
            value = "0.0.0+unknown"
        globals()["__version__"] = value
        return value
    return _getattr(name)


if "torch" in sys.modules:
    # torch is loaded already, so registering the custom ops costs little: keep `import torch;
    # import lcengine` enough for torch.ops.lcengine.* (torch.compile, torch.export).
    from . import ops as _ops  # noqa: F401
