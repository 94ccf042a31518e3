# SPDX-License-Identifier: Apache-2.0
"""The native CUDA runner of the fused latent optimizer (``_C.optimize_latents_cuda``).

Allocates the outputs and the kernel's workspace with torch (the caching allocator, on the
current stream of ``prep``'s device) and runs the whole multi-step loop on that stream: one
persistent row-tile kernel for critics whose widths are all <= 256, otherwise per-step fused GEMM
launches (replayed from a CUDA graph for small batches). See kernels/cuda/optimize.cu. The
``cuda_*`` fields of the tuning (path, tile height, graph, chunk) reach the kernels through the
argument struct.
"""

from __future__ import annotations

import torch

from ...backend import native_module
from .config import OptimizeHyperParams, OptimizeTuning
from .prepare import Prepared


@torch.no_grad()
def run_cuda(
    prep: Prepared, hyper: OptimizeHyperParams, tuning: OptimizeTuning
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Runs the optimizer on ``prep``'s CUDA device.

    Args:
        prep: the call's constant tensors (:func:`.prepare.prepare`), all on one CUDA device;
            weights float32 or all bfloat16 (``w_first``'s dtype decides).
        hyper: steps and Adam (validated).
        tuning: its ``cuda_*`` fields.

    Returns:
        ``(z [B, D] float32, converged [B] bool, steps [B] int64, logits [B, C] float32)``.
    """
    mod = native_module()
    if mod is None or not getattr(mod, "with_cuda", False):
        raise RuntimeError("optimize_latents: lcengine._C was built without CUDA kernels")
    device = prep.z_start.device
    if device.type != "cuda":
        raise ValueError(f"run_cuda needs CUDA tensors, got {device}")
    wdtype = torch.bfloat16 if prep.weights_bf16 else torch.float32
    weights = [w for n in prep.nets for w in n.weights] + [prep.w_first]
    for w in weights:  # the kernels read raw pointers: one dtype, contiguous, on this device
        if w.dtype != wdtype or not w.is_contiguous() or w.device != device:
            raise ValueError(
                f"every critic weight must be a contiguous {wdtype} tensor on "
                f"{device}, got {w.dtype} on {w.device}"
            )
    b, d, c = prep.rows, prep.dim, prep.num_outputs
    z_out = torch.empty(b, d, dtype=torch.float32, device=device)  # [B, D]
    # Every row's converged / steps are written by either path (the tile kernel when a row
    # freezes or at the final check; the generic path's init kernel, then the checks).
    converged = torch.empty(b, dtype=torch.uint8, device=device)  # [B]
    steps_taken = torch.empty(b, dtype=torch.int64, device=device)  # [B]
    logits = torch.empty(b, c, dtype=torch.float32, device=device)  # [B, C]
    args = prep.native_args(mod, z_out, converged, steps_taken, logits, hyper=hyper, tuning=tuning)
    with torch.cuda.device(device):
        nbytes = int(mod.optimize_latents_cuda_workspace_bytes(args))
        workspace = torch.empty(max(nbytes, 1), dtype=torch.uint8, device=device)  # [bytes]
        stream = torch.cuda.current_stream(device).cuda_stream
        # prep's tensors, the outputs and the workspace stay referenced until the call returns;
        # the caching allocator orders any later reuse of their memory after this stream's work.
        mod.optimize_latents_cuda(args, workspace.data_ptr(), nbytes, stream)
    return z_out, converged.view(torch.bool), steps_taken, logits
