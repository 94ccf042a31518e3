# SPDX-License-Identifier: Apache-2.0
"""Triton kernels of lcengine and their tensor-level launchers (shipped as ``lcengine._triton``).

Each launcher takes already-validated, contiguous tensors on one device and preallocated outputs,
computes exactly what the matching ``*_cpu`` function of csrc/lcengine_ops.h computes (float32
math, float32/float16/bfloat16 storage), and returns None. Launches go through
``torch.library.wrap_triton`` when available, so they can be called from a
``torch.library.triton_op`` and traced by ``torch.compile``/``torch.export``.

One module per op family, named like its C++ (csrc/) and CUDA (kernels/cuda/) twins: ``rng``
(Philox normals), ``row_losses`` (gaussian_kl, distance_penalty, constraint_loss), ``adam``
(latent_adam_) and ``optimize`` (the fused latent optimizer's kernels, driven by
lcengine.ops.optimize_latents.triton).

Every launch runs on its tensors' CUDA device (``_common.launch``/``device_guard``). Importing
the package with a Triton older than ``_common.MIN_TRITON`` raises ImportError naming both
versions (``version_problem``), which lcengine.backend reports as the Triton backend's reason.

Only relative imports here: this folder is the subpackage ``lcengine._triton`` in the wheel.
"""

from ._common import MIN_TRITON, version_problem

_problem = version_problem()
if _problem is not None:
    raise ImportError(_problem)

from . import optimize  # noqa: E402
from .adam import _latent_adam_fwd_kernel, latent_adam_  # noqa: E402
from .rng import (  # noqa: E402
    _philox_words_kernel,
    _reparameterize_bwd_kernel,
    _reparameterize_fwd_kernel,
    _standard_normal_fwd_kernel,
    philox_words,
    reparameterize,
    reparameterize_backward,
    standard_normal,
)
from .row_losses import (  # noqa: E402
    WEIGHT_FULL,
    WEIGHT_LAST_DIM,
    WEIGHT_NONE,
    _constraint_loss_fwd_kernel,
    _distance_penalty_fwd_kernel,
    _gaussian_kl_fwd_kernel,
    constraint_loss,
    distance_penalty,
    gaussian_kl,
)

# The launchers (what lcengine.ops calls), then the kernels behind them, constraint_loss's weight
# modes and the optimizer's kernel module.
__all__ = [
    "constraint_loss",
    "distance_penalty",
    "gaussian_kl",
    "latent_adam_",
    "philox_words",
    "reparameterize",
    "reparameterize_backward",
    "standard_normal",
    "WEIGHT_FULL",
    "WEIGHT_LAST_DIM",
    "WEIGHT_NONE",
    "_constraint_loss_fwd_kernel",
    "_distance_penalty_fwd_kernel",
    "_gaussian_kl_fwd_kernel",
    "_latent_adam_fwd_kernel",
    "_philox_words_kernel",
    "_reparameterize_bwd_kernel",
    "_reparameterize_fwd_kernel",
    "_standard_normal_fwd_kernel",
    "optimize",
    "MIN_TRITON",
    "version_problem",
]
