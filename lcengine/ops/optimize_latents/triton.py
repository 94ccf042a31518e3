# SPDX-License-Identifier: Apache-2.0
"""The Triton latent optimizer: the step loop over the kernels of ``lcengine._triton.optimize``.

One step is 2L + 2 launches for two critics of L layers (forward per layer, the loss/check
kernel, backward per hidden layer, the first layer's backward fused with the distance gradient
and Adam). Every critic's first layer is one GEMM over the stacked ``w_first``; the realism
critic's y-embedding is a per-row bias. Rows are masked, not compacted, so shapes never change
between steps; GEMM tiles whose rows are all frozen are skipped. The step number and Adam's
per-step factors live on the device, so on CUDA a chunk of steps is captured once in a CUDA graph
and replayed (``tuning.triton_graph``, ``tuning.triton_chunk_steps``); between chunks one flag
read stops the loop when every row has frozen. Rows are independent, so a batch whose buffers
exceed ``tuning.triton_workspace_bytes`` runs as blocks of rows, each to completion.
"""

from __future__ import annotations

import dataclasses

import torch

from ...backend import triton_module
from .config import OptimizeHyperParams, OptimizeTuning
from .prepare import Prepared


class _Loop:
    """Buffers and launches of one call (all on the prepared device, float32)."""

    def __init__(self, prep: Prepared, hyper: OptimizeHyperParams):
        self.k = triton_module().optimize
        self.p = prep
        steps, lr, beta1, beta2 = hyper.steps, hyper.lr, hyper.beta1, hyper.beta2
        self.beta1, self.beta2, self.eps = beta1, beta2, hyper.eps
        dev = prep.z_start.device
        f32 = dict(dtype=torch.float32, device=dev)
        b, d, c = prep.rows, prep.dim, prep.num_outputs
        self.z = prep.z_start.clone()  # [B, D]
        self.exp_avg = torch.zeros(b, d, **f32)  # [B, D]
        self.exp_avg_sq = torch.zeros(b, d, **f32)  # [B, D]
        self.active = torch.ones(b, dtype=torch.uint8, device=dev)  # [B]
        self.converged = torch.zeros(b, dtype=torch.uint8, device=dev)  # [B]
        self.steps_taken = torch.zeros(b, dtype=torch.int64, device=dev)  # [B]
        self.step = torch.zeros(1, dtype=torch.int32, device=dev)  # steps started
        self.logits = torch.zeros(b, c, **f32)  # [B, C]
        self.g_logits = torch.zeros(b, c, **f32)  # [B, C]
        self.h1 = torch.zeros(b, prep.first_width, **f32)  # [B, H1] first-layer activations
        self.g1 = torch.zeros(b, prep.first_width, **f32)  # [B, H1] their gradients
        # hidden[n][l]: activation of net n after layer l (l = 0 is the slice of h1)
        self.hidden, self.grads = [], []
        for net in prep.nets:
            first = net.first_offset
            acts = [self.h1[:, first : first + net.widths[1]]]
            grads = [self.g1[:, first : first + net.widths[1]]]
            for width in net.widths[2:-1]:
                acts.append(torch.zeros(b, width, **f32))
                grads.append(torch.zeros(b, width, **f32))
            self.hidden.append(acts)
            self.grads.append(grads)
        # Adam's factors per step t = 1..steps, folded in float64 (row 0 unused)
        t = torch.arange(steps + 1, dtype=torch.float64)
        table = torch.stack(
            [lr / (1.0 - beta1 ** t.clamp(min=1)), torch.sqrt(1.0 - beta2 ** t.clamp(min=1))], 1
        )  # [steps + 1, 2]
        self.table = table.to(**f32).contiguous()
        self.coef = (prep.inv_sigma_sq * (prep.w_dist * 2.0 / d)).contiguous()  # [D]
        self.first_groups = self._first_groups()

    def _first_groups(self) -> list:
        """Runs of consecutive nets with one activation: [(activation, start, end)] in H1
        columns. Critics built alike (the usual case) make one group: one GEMM for all."""
        groups = []
        for net in self.p.nets:
            end = net.first_offset + net.widths[1]
            if groups and groups[-1][0] == net.activation:
                groups[-1] = (net.activation, groups[-1][1], end)
            else:
                groups.append((net.activation, net.first_offset, end))
        return groups

    def forward(self, *, skip_inactive: bool) -> None:
        k, p = self.k, self.p
        for act, start, end in self.first_groups:
            rb = p.row_bias if start == 0 else None  # the realism critic's columns come first
            k.linear_fwd(
                self.z,
                p.w_first[start:end],
                p.b_first[start:end],
                self.h1[:, start:end],
                self.active,
                act=act,
                apply_act=True,
                skip_inactive=skip_inactive,
                row_bias=rb,
            )
        for net, acts in zip(p.nets, self.hidden, strict=True):
            x = acts[0]
            for layer, (w, bias) in enumerate(zip(net.weights, net.biases, strict=True)):
                last = layer == len(net.weights) - 1
                out = (
                    self.logits[:, net.output_offset : net.output_offset + net.widths[-1]]
                    if last
                    else acts[layer + 1]
                )
                k.linear_fwd(
                    x,
                    w,
                    bias,
                    out,
                    self.active,
                    act=net.activation,
                    apply_act=not last,
                    skip_inactive=skip_inactive,
                )
                x = out

    def one_step(self) -> None:
        k, p = self.k, self.p
        self.forward(skip_inactive=True)
        k.loss_check(
            self.logits,
            p.target,
            p.loss_weight,
            p.requirement,
            p.upper,
            p.lower,
            self.active,
            self.converged,
            self.steps_taken,
            self.g_logits,
            self.step,
            final=False,
        )
        for net, acts, grads in zip(p.nets, self.hidden, self.grads, strict=True):
            g = self.g_logits[:, net.output_offset : net.output_offset + net.widths[-1]]
            for layer in range(len(net.weights) - 1, -1, -1):
                k.linear_bwd(
                    g,
                    net.weights[layer],
                    acts[layer],
                    grads[layer],
                    self.active,
                    act=net.activation,
                )
                g = grads[layer]
        k.first_bwd_adam(
            self.g1,
            p.w_first,
            self.z,
            p.z_start,
            self.exp_avg,
            self.exp_avg_sq,
            self.coef,
            self.active,
            self.step,
            self.table,
            beta1=self.beta1,
            beta2=self.beta2,
            eps=self.eps,
        )

    def finish(self) -> None:
        p = self.p
        self.forward(skip_inactive=False)
        self.k.loss_check(
            self.logits,
            p.target,
            p.loss_weight,
            p.requirement,
            p.upper,
            p.lower,
            self.active,
            self.converged,
            self.steps_taken,
            self.g_logits,
            self.step,
            final=True,
        )


def bytes_per_row(prep: Prepared) -> int:
    """Bytes per row of a :class:`_Loop`'s buffers (z and the Adam moments, activations and
    their gradients, logits and their gradients, the row flags) plus the row's anchor
    ``prep.z_start``: the four [D] terms."""
    hidden = sum(sum(net.widths[2:-1]) for net in prep.nets)
    floats = 4 * prep.dim + 2 * prep.num_outputs + 2 * prep.first_width + 2 * hidden
    return 4 * floats + 10  # + active, converged, steps_taken


def _rows(prep: Prepared, start: int, stop: int) -> Prepared:
    """The prepared inputs of rows [start, stop) (row slices of contiguous tensors: views)."""
    cut = {
        f: getattr(prep, f)[start:stop] for f in ("z_start", "target", "loss_weight", "requirement")
    }
    cut["row_bias"] = None if prep.row_bias is None else prep.row_bias[start:stop]
    return dataclasses.replace(prep, **cut)


def run_triton(
    prep: Prepared, hyper: OptimizeHyperParams, tuning: OptimizeTuning
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Runs ``hyper.steps`` optimizer steps on ``prep``'s device.

    Returns:
        ``(z [B, D] float32, converged [B] bool, steps [B] int64, logits [B, C] float32)``,
        like the native runners. Batches whose buffers exceed
        ``tuning.triton_workspace_bytes`` run as consecutive blocks of rows.
    """
    block = max(1, tuning.triton_workspace_bytes // bytes_per_row(prep))
    if prep.rows <= block:
        return _run_block(prep, hyper, tuning)
    parts = [
        _run_block(_rows(prep, start, min(start + block, prep.rows)), hyper, tuning)
        for start in range(0, prep.rows, block)
    ]
    return tuple(torch.cat(pieces) for pieces in zip(*parts, strict=True))


def _run_block(prep: Prepared, hyper: OptimizeHyperParams, tuning: OptimizeTuning) -> tuple:
    loop = _Loop(prep, hyper)
    steps, chunk = hyper.steps, tuning.triton_chunk_steps
    device = prep.z_start.device
    done = 0
    if device.type == "cuda" and tuning.triton_graph and steps > chunk:
        loop.one_step()  # compiles every kernel outside the capture
        done = 1
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        graph = torch.cuda.CUDAGraph()
        # capture_begin/end rather than the torch.cuda.graph context manager, which on entry
        # also synchronizes the device and empties the caching allocator (on every call here)
        with torch.cuda.stream(stream):
            graph.capture_begin()
            try:
                for _ in range(chunk):
                    loop.one_step()
            finally:
                graph.capture_end()
        # capture records without running: the steps it holds run at each replay
        while done + chunk <= steps and bool(loop.active.any()):
            graph.replay()
            done += chunk
    while done < steps:
        if done % chunk == 0 and done > 0 and not bool(loop.active.any()):
            break
        loop.one_step()
        done += 1
    loop.finish()
    return loop.z, loop.converged.to(torch.bool), loop.steps_taken, loop.logits
