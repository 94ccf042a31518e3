# SPDX-License-Identifier: Apache-2.0
"""Triton kernels of lcengine and their tensor-level launchers (shipped as ``lcengine._triton``).

Each launcher takes already-validated, contiguous tensors on one device and preallocated outputs,
computes exactly what the matching ``*_cpu`` function of csrc/lcengine_ops.h computes (float32
math, float32/float16/bfloat16 storage), and returns None. Launches go through
``torch.library.wrap_triton`` when available, so they can be called from a
``torch.library.triton_op`` and traced by ``torch.compile``/``torch.export``.

Only relative imports here: this folder is the subpackage ``lcengine._triton`` in the wheel.
"""
from .constraint_loss import (
    WEIGHT_FULL,
    WEIGHT_LAST_DIM,
    WEIGHT_NONE,
    _constraint_loss_fwd_kernel,
    constraint_loss,
)
from .distance_penalty import _distance_penalty_fwd_kernel, distance_penalty
from .gaussian_kl import _gaussian_kl_fwd_kernel, gaussian_kl
from . import optimize  # the fused latent optimizer's kernels (lcengine.ops._optimize_triton)
from .latent_adam import _latent_adam_fwd_kernel, latent_adam_
from .rng import (
    _reparameterize_bwd_kernel,
    _reparameterize_fwd_kernel,
    _standard_normal_fwd_kernel,
    reparameterize,
    reparameterize_backward,
    standard_normal,
)

__all__ = [
    "constraint_loss",
    "distance_penalty",
    "gaussian_kl",
    "latent_adam_",
    "reparameterize",
    "reparameterize_backward",
    "standard_normal",
]
