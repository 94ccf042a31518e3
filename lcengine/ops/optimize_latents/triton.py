# SPDX-License-Identifier: Apache-2.0
"""The Triton latent optimizer: the step loop over the kernels of ``lcengine._triton.optimize``.

One step is 2L + 2 launches for two critics of L layers (forward per layer, the loss/check
kernel, backward per hidden layer, the first layer's backward fused with the distance gradient
and Adam). Every critic's first layer is one GEMM over the stacked ``w_first``; the realism
critic's y-embedding is a per-row bias. Rows are masked, not compacted, so shapes never change
between steps; GEMM tiles whose rows are all frozen are skipped. The step number and Adam's
per-step factors live on the device, so on CUDA a chunk of steps is captured in a CUDA graph
(thread-local capture mode) and replayed (``tuning.triton_graph``, ``tuning.triton_chunk_steps``);
between chunks one flag read stops the loop when every row has frozen. Rows are independent, so
a batch whose buffers exceed ``tuning.triton_workspace_bytes`` runs as blocks of rows, each to
completion.

Captured graphs are kept (``GRAPH_CACHE``, a small LRU bounded in entries and bytes) with the
static buffers they read and write, keyed by :func:`graph_key` (device, shapes, dtypes, strides,
the nets, the launch scalars, steps, chunk): a later call of the same key copies its inputs into
the static buffers, resets the state (:meth:`_Loop.reset`), replays and copies its outputs out.
An entry serves one call at a time (its lock; a call that finds it busy captures a graph of its
own), and each call waits for the previous user's work on its stream (an event).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections import OrderedDict
from typing import Any, Callable, Optional

import torch

from ...backend import triton_module
from .config import OptimizeHyperParams, OptimizeTuning
from .prepare import Prepared


class _Loop:
    """Buffers and launches of one block of rows (all on the prepared device, float32).

    :meth:`reset` puts every state buffer back to the start of a call, so a cached loop (whose
    buffers a captured CUDA graph reads and writes) starts each call from the same state as a
    fresh one.
    """

    def __init__(self, prep: Prepared, hyper: OptimizeHyperParams):
        self.k = triton_module().optimize
        self.p = prep
        self.beta1, self.beta2, self.eps = hyper.beta1, hyper.beta2, hyper.eps
        dev = prep.z_start.device
        f32 = dict(dtype=torch.float32, device=dev)
        b, d, c = prep.rows, prep.dim, prep.num_outputs
        self.z = torch.empty(b, d, **f32)  # [B, D]
        self.exp_avg = torch.empty(b, d, **f32)  # [B, D]
        self.exp_avg_sq = torch.empty(b, d, **f32)  # [B, D]
        self.active = torch.empty(b, dtype=torch.uint8, device=dev)  # [B]
        self.converged = torch.empty(b, dtype=torch.uint8, device=dev)  # [B]
        self.steps_taken = torch.empty(b, dtype=torch.int64, device=dev)  # [B]
        self.step = torch.empty(1, dtype=torch.int32, device=dev)  # steps started
        self.logits = torch.empty(b, c, **f32)  # [B, C]
        self.g_logits = torch.empty(b, c, **f32)  # [B, C]
        self.h1 = torch.empty(b, prep.first_width, **f32)  # [B, H1] first-layer activations
        self.g1 = torch.empty(b, prep.first_width, **f32)  # [B, H1] their gradients
        # hidden[n][l]: activation of net n after layer l (l = 0 is the slice of h1)
        self.hidden, self.grads, self.own = [], [], []
        for net in prep.nets:
            first = net.first_offset
            acts = [self.h1[:, first : first + net.widths[1]]]
            grads = [self.g1[:, first : first + net.widths[1]]]
            for width in net.widths[2:-1]:
                acts.append(torch.empty(b, width, **f32))
                grads.append(torch.empty(b, width, **f32))
                self.own += acts[-1:] + grads[-1:]
            self.hidden.append(acts)
            self.grads.append(grads)
        self.table = torch.empty(hyper.steps + 1, 2, **f32)  # [steps + 1, 2]
        self.coef = torch.empty(d, **f32)  # [D]
        self.first_groups = self._first_groups()
        self.reset(hyper)

    def buffers(self) -> list:
        """Every tensor the launches read or write besides ``self.p``'s."""
        own = [self.z, self.exp_avg, self.exp_avg_sq, self.active, self.converged]
        own += [self.steps_taken, self.step, self.logits, self.g_logits, self.h1, self.g1]
        return own + self.own + [self.table, self.coef]

    def reset(self, hyper: OptimizeHyperParams) -> None:
        """The state at the start of a call on ``self.p`` (whose tensors may have been refilled):
        z = z_start, zero moments and counters, every row active, and Adam's table and the
        distance coefficients of ``hyper`` and ``self.p``. Activations and gradients are zeroed
        too, so nothing of an earlier call survives."""
        p = self.p
        self.z.copy_(p.z_start)
        for buf in [self.exp_avg, self.exp_avg_sq, self.converged, self.steps_taken, self.step]:
            buf.zero_()
        for buf in [self.logits, self.g_logits, self.h1, self.g1, *self.own]:
            buf.zero_()
        self.active.fill_(1)
        # Adam's factors per step t = 1..steps, folded in float64 (row 0 unused)
        lr, beta1, beta2 = hyper.lr, hyper.beta1, hyper.beta2
        t = torch.arange(hyper.steps + 1, dtype=torch.float64)
        table = torch.stack(
            [lr / (1.0 - beta1 ** t.clamp(min=1)), torch.sqrt(1.0 - beta2 ** t.clamp(min=1))], 1
        )  # [steps + 1, 2]
        self.table.copy_(table)
        self.coef.copy_(p.inv_sigma_sq * (p.w_dist * 2.0 / p.dim))  # [D]

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
    device = prep.z_start.device
    # the device every launch, capture, replay and event below belongs to (the launches also
    # guard themselves: lcengine._triton._common.device_guard)
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        block = max(1, tuning.triton_workspace_bytes // bytes_per_row(prep))
        if prep.rows <= block:
            return _run_block(prep, hyper, tuning)
        parts = [
            _run_block(_rows(prep, start, min(start + block, prep.rows)), hyper, tuning)
            for start in range(0, prep.rows, block)
        ]
        return tuple(torch.cat(pieces) for pieces in zip(*parts, strict=True))


# ---------------------------------------------------------------------------------------------
# CUDA graphs: one capture per shape and configuration, replayed by every later call.
# ---------------------------------------------------------------------------------------------

_PREP_TENSORS = ("w_first", "b_first", "row_bias", "target", "loss_weight", "requirement")
_PREP_TENSORS += ("upper", "lower", "inv_sigma_sq", "z_start")


def _prep_tensors(prep: Prepared) -> list:
    """Every tensor of ``prep`` the kernels read, in a fixed order (row_bias when present)."""
    out = [getattr(prep, f) for f in _PREP_TENSORS if getattr(prep, f) is not None]
    for net in prep.nets:
        out += list(net.weights) + list(net.biases)
    return out


def _static_copy(prep: Prepared) -> Prepared:
    """``prep`` with every tensor cloned (contiguous): the inputs a cached graph reads."""
    nets = [
        dataclasses.replace(
            net,
            weights=[w.clone() for w in net.weights],
            biases=[v.clone() for v in net.biases],
        )
        for net in prep.nets
    ]
    cut = {f: getattr(prep, f) for f in _PREP_TENSORS}
    cut = {f: None if t is None else t.clone() for f, t in cut.items()}
    return dataclasses.replace(prep, nets=nets, **cut)


def graph_key(prep: Prepared, hyper: OptimizeHyperParams, tuning: OptimizeTuning) -> tuple:
    """Everything a captured chunk of steps bakes in: the device, every tensor's shape, dtype
    and strides (so the block's rows, widths, weight dtype, row bias), the nets' activations
    and column offsets, the launch scalars (Adam's betas and eps), the Adam table's length
    (steps) and the chunk's length. Values that live in buffers (weights, targets, thresholds,
    lr, w_dist, sigma_bar) are copied in by each call and are not part of the key."""
    tensors = tuple(
        (tuple(t.shape), t.dtype, tuple(t.stride())) for t in _prep_tensors(prep)
    )  # row_bias's presence shows in the count and shapes
    nets = tuple(
        (net.activation, tuple(net.widths), net.first_offset, net.output_offset)
        for net in prep.nets
    )
    return (
        str(prep.z_start.device),
        prep.row_bias is not None,
        tensors,
        nets,
        float(hyper.beta1),
        float(hyper.beta2),
        float(hyper.eps),
        int(hyper.steps),
        int(tuning.triton_chunk_steps),
    )


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class CudaGraphs:
    """What the runner needs of CUDA graphs; tests substitute a fake with the same methods."""

    def capture(self, device: torch.device, record: Callable[[], None], buffers: list) -> Any:
        """A graph of what ``record()`` launches, captured on a side stream in thread-local
        mode (other threads' CUDA calls do not invalidate it). ``buffers``: every tensor the
        launches touch (their addresses are baked into the graph)."""
        del buffers
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        graph = torch.cuda.CUDAGraph()
        # capture_begin/end rather than the torch.cuda.graph context manager, which on entry
        # also synchronizes the device and empties the caching allocator
        with torch.cuda.stream(stream):
            graph.capture_begin(capture_error_mode="thread_local")
            try:
                record()
            finally:
                graph.capture_end()
        return graph

    def replay(self, graph: Any) -> None:
        graph.replay()

    def record_event(self, device: torch.device) -> Any:
        """An event after the work queued so far on the current stream."""
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(device))
        return event

    def wait_event(self, device: torch.device, event: Any) -> None:
        """The current stream waits for ``event`` (a cached entry's previous user's work)."""
        torch.cuda.current_stream(device).wait_event(event)


def _graph_runtime(device: torch.device) -> Optional[CudaGraphs]:
    """The graph runtime for ``device``: CUDA graphs on CUDA, none elsewhere (tests patch it)."""
    return CudaGraphs() if device.type == "cuda" else None


@dataclasses.dataclass
class GraphEntry:
    """A cached loop: static inputs (``loop.p``) and state buffers, and the graph captured on
    them (None until the first call captures it). ``lock`` is held by the call using it;
    ``event`` marks the end of the last call's work on its stream."""

    loop: _Loop
    nbytes: int
    graph: Any = None
    event: Any = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class GraphCache:
    """A small LRU cache of :class:`GraphEntry` by :func:`graph_key`, bounded in entries and in
    the bytes of their buffers. :meth:`checkout` hands an entry to one caller at a time: while
    another thread holds it, the caller gets None and runs uncached."""

    def __init__(self, max_entries: int = 4, max_bytes: int = 1 << 30):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: "OrderedDict[tuple, GraphEntry]" = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def checkout(
        self, key: tuple, nbytes: int, build: Callable[[], GraphEntry]
    ) -> Optional[GraphEntry]:
        """The entry for ``key``, locked for the caller (release with :meth:`release`), built
        by ``build()`` when missing; None when it is in use by another thread or larger than
        ``max_bytes`` on its own."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                if nbytes > self.max_bytes or self.max_entries < 1:
                    return None
                entry = build()
                self._entries[key] = entry
                self._evict(keep=key)
            else:
                self._entries.move_to_end(key)
            return entry if entry.lock.acquire(blocking=False) else None

    def release(self, entry: GraphEntry) -> None:
        entry.lock.release()

    def _evict(self, keep: tuple) -> None:
        """Drops least recently used entries beyond the bounds (never ``keep``). A dropped entry
        still in use stays valid for its user and is freed after."""
        total = self.nbytes
        for key in list(self._entries):
            if len(self._entries) <= self.max_entries and total <= self.max_bytes:
                break
            if key != keep:
                total -= self._entries.pop(key).nbytes


# The process's cache of captured chunks (clear() frees their buffers and graphs).
GRAPH_CACHE = GraphCache()


def _outputs(loop: _Loop, *, copy: bool) -> tuple:
    """(z, converged, steps, logits) of a finished loop; copies when the buffers are reused."""
    z, steps, logits = loop.z, loop.steps_taken, loop.logits
    if copy:
        z, steps, logits = z.clone(), steps.clone(), logits.clone()
    return z, loop.converged.to(torch.bool), steps, logits


def _run_steps(
    loop: _Loop,
    hyper: OptimizeHyperParams,
    tuning: OptimizeTuning,
    graphs: Optional[CudaGraphs],
    entry: Optional[GraphEntry],
) -> None:
    """Every step of ``loop`` and the final check. With ``graphs``: one step launched directly
    (it compiles every kernel outside the capture), then chunks of ``triton_chunk_steps`` as
    graph replays (captured here unless ``entry`` holds one), then the remaining steps directly;
    one host read of the row flags between chunks stops when every row has frozen. The same
    schedule with or without a cached graph, so the same results."""
    steps, chunk = hyper.steps, tuning.triton_chunk_steps
    device = loop.p.z_start.device
    done = 0
    if graphs is not None:
        loop.one_step()
        done = 1
        graph = entry.graph if entry is not None else None
        if graph is None:

            def record() -> None:
                for _ in range(chunk):
                    loop.one_step()

            graph = graphs.capture(device, record, _prep_tensors(loop.p) + loop.buffers())
            if entry is not None:
                entry.graph = graph
        # capture records without running: the steps it holds run at each replay
        while done + chunk <= steps and bool(loop.active.any()):
            graphs.replay(graph)
            done += chunk
    while done < steps:
        if done % chunk == 0 and done > 0 and not bool(loop.active.any()):
            break
        loop.one_step()
        done += 1
    loop.finish()


def _run_block(
    prep: Prepared,
    hyper: OptimizeHyperParams,
    tuning: OptimizeTuning,
    cache: Optional[GraphCache] = None,
) -> tuple:
    device = prep.z_start.device
    graphs = _graph_runtime(device) if tuning.triton_graph else None
    if graphs is None or hyper.steps <= tuning.triton_chunk_steps:
        loop = _Loop(prep, hyper)
        _run_steps(loop, hyper, tuning, None, None)
        return _outputs(loop, copy=False)
    cache = GRAPH_CACHE if cache is None else cache
    key = graph_key(prep, hyper, tuning)
    nbytes = _nbytes(_prep_tensors(prep)) + bytes_per_row(prep) * prep.rows

    def build() -> GraphEntry:
        loop = _Loop(_static_copy(prep), hyper)
        return GraphEntry(loop, _nbytes(_prep_tensors(loop.p) + loop.buffers()))

    entry = cache.checkout(key, nbytes, build)
    if entry is None:  # in use by another thread, or too large to keep: a graph of its own
        loop = _Loop(prep, hyper)
        _run_steps(loop, hyper, tuning, graphs, None)
        return _outputs(loop, copy=False)
    try:
        if entry.event is not None:  # the previous call's work on its stream
            graphs.wait_event(device, entry.event)
        loop = entry.loop
        for static, new in zip(_prep_tensors(loop.p), _prep_tensors(prep), strict=True):
            static.copy_(new)
        loop.p.w_dist = prep.w_dist
        loop.reset(hyper)
        _run_steps(loop, hyper, tuning, graphs, entry)
        out = _outputs(loop, copy=True)
        entry.event = graphs.record_event(device)
        return out
    finally:
        cache.release(entry)
