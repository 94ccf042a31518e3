# SPDX-License-Identifier: Apache-2.0
"""The Triton optimizer keeps its captured CUDA graphs: one capture per shape and configuration,
replayed by later calls on static buffers, with nothing of an earlier call left behind.

Without a GPU the cache logic runs with a fake graph runtime (``_graph_runtime`` patched): its
capture records the launches' closure instead of a CUDA graph and its replay runs it, after
checking that every buffer the capture saw is still at the same address (what a real graph
bakes in). The kernels run under the interpreter.
"""

import importlib
import threading
import time

import pytest
import torch

import lcengine
from lcengine.ops.optimize_latents.config import OptimizeTuning
from support.optimize_problems import make_problem
from support.params import backend_device_params

pytestmark = pytest.mark.triton

runner = importlib.import_module("lcengine.ops.optimize_latents.triton")
TRITON = backend_device_params(("triton",))
TUNING = OptimizeTuning(triton_chunk_steps=4)
STEPS = 14  # one direct step, three replays of 4, one direct step


class FakeGraph:
    def __init__(self, runtime, record, buffers):
        self.runtime, self.record, self.buffers = runtime, record, buffers
        self.addresses = [b.data_ptr() for b in buffers]
        self.replays = 0

    def replay(self):
        assert [b.data_ptr() for b in self.buffers] == self.addresses, "a buffer moved"
        with self.runtime.lock:
            self.runtime.running[id(self)] = self.runtime.running.get(id(self), 0) + 1
            self.runtime.max_running = max(self.runtime.max_running, *self.runtime.running.values())
        try:
            time.sleep(self.runtime.delay)
            self.record()
            self.replays += 1
        finally:
            with self.runtime.lock:
                self.runtime.running[id(self)] -= 1


class FakeGraphs:
    """The methods of ``runner.CudaGraphs``, on CPU."""

    def __init__(self, delay=0.0):
        self.captures, self.events, self.waits = 0, 0, 0
        self.delay, self.lock, self.running, self.max_running = delay, threading.Lock(), {}, 0

    def capture(self, device, record, buffers):
        with self.lock:
            self.captures += 1
        return FakeGraph(self, record, buffers)

    def replay(self, graph):
        graph.replay()

    def record_event(self, device):
        self.events += 1
        return object()

    def wait_event(self, device, event):
        self.waits += 1


@pytest.fixture
def graphs(monkeypatch):
    fake = FakeGraphs()
    monkeypatch.setattr(runner, "_graph_runtime", lambda device: fake)
    monkeypatch.setattr(runner, "GRAPH_CACHE", runner.GraphCache())
    return fake


def _problem(b=6, d=5, seed=1):
    return make_problem(b, d, (12,), "relu", seed=seed)


def _run(problem, device, *, graph=True, tuning=TUNING, **kw):
    z, y, mask, real, attr = problem
    kw = {"steps": STEPS, **kw}
    tuning = OptimizeTuning(**{**tuning.__dict__, "triton_graph": graph})
    return lcengine.optimize_latents(
        z.to(device),
        y.to(device),
        mask.to(device),
        real.to(device),
        attr.to(device),
        1.0,
        backend="triton",
        tuning=tuning,
        **kw,
    )


def _same(a, b):
    for field in ("latents", "converged", "steps", "realism_prob", "attribute_prob"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


@pytest.mark.parametrize("backend_name,device", TRITON)
def test_same_shape_twice_captures_once_and_matches_the_uncached_path(graphs, backend_name, device):
    problem = _problem()
    plain = _run(problem, device, graph=False)  # no graph at all
    first = _run(problem, device)
    second = _run(problem, device)
    assert graphs.captures == 1 and len(runner.GRAPH_CACHE) == 1
    assert (graphs.events, graphs.waits) == (2, 1)  # the second call waited for the first
    _same(first, plain)
    _same(second, plain)
    assert first.latents.data_ptr() != second.latents.data_ptr()  # outputs are copies


@pytest.mark.parametrize("backend_name,device", TRITON)
def test_new_values_same_key_reuse_the_graph_and_leak_nothing(graphs, backend_name, device):
    """Other latents, targets, critic weights, lr, thresholds and sigma_bar are buffer contents,
    not part of the key: the cached graph serves them, each call from a clean state."""
    a, b = _problem(seed=1), _problem(seed=2)  # same shapes, other values
    _run(a, device, lr=0.2)
    got_b = _run(b, device, tau_r=0.6, tau_a=0.55, lr=0.03, w_dist=0.3)
    got_a = _run(a, device, lr=0.2)
    assert graphs.captures == 1
    _same(got_b, _run(b, device, graph=False, tau_r=0.6, tau_a=0.55, lr=0.03, w_dist=0.3))
    _same(got_a, _run(a, device, graph=False, lr=0.2))


@pytest.mark.parametrize("backend_name,device", TRITON)
def test_a_different_shape_or_configuration_captures_anew(graphs, backend_name, device):
    _run(_problem(b=6), device)
    _run(_problem(b=7), device)  # rows
    assert graphs.captures == 2
    _run(_problem(b=6), device, betas=(0.8, 0.99))  # a launch scalar
    _run(_problem(b=6), device, steps=STEPS + 4)  # the Adam table's length
    _run(_problem(b=6), device, tuning=OptimizeTuning(triton_chunk_steps=3))  # the chunk
    assert graphs.captures == 5 and len(runner.GRAPH_CACHE) == 4  # the default bound, LRU
    _run(_problem(b=6), device, tuning=OptimizeTuning(triton_chunk_steps=3))
    assert graphs.captures == 5  # the most recent entry is still there
    _run(_problem(b=6), device)
    assert graphs.captures == 6  # the oldest was evicted


def test_graph_key_separates_what_a_capture_bakes_in():
    from lcengine.ops.optimize_latents.config import OptimizeHyperParams
    from lcengine.ops.optimize_latents.prepare import parse_critics, prepare

    def key(b=6, d=5, hidden=(12,), act="relu", wd=torch.float32, **hyper):
        z, y, mask, real, attr = make_problem(b, d, hidden, act)
        h = OptimizeHyperParams(**{"steps": STEPS, **hyper})
        critics = parse_critics(real, attr, d, y.shape[1], y.shape[1])
        prep = prepare(critics, z, y, mask, 1.0, h, realism_attributes=y.shape[1], weight_dtype=wd)
        return runner.graph_key(prep, h, TUNING)

    base = key()
    assert key() == base
    assert key(lr=0.3, tau_r=0.7, w_dist=1.0) == base  # buffer contents
    for other in (
        key(b=7),
        key(d=6),
        key(hidden=(13,)),
        key(act="softplus"),
        key(wd=torch.bfloat16),
        key(beta1=0.8),
        key(eps=1e-6),
        key(steps=STEPS + 1),
    ):
        assert other != base


def _entry(nbytes=10):
    return runner.GraphEntry(loop=None, nbytes=nbytes)


def test_the_cache_is_bounded_in_entries_and_bytes():
    cache = runner.GraphCache(max_entries=2, max_bytes=100)
    for key in ("a", "b", "c"):
        cache.release(cache.checkout(key, 10, _entry))
    assert len(cache) == 2 and "a" not in cache._entries  # least recently used went first
    cache.release(cache.checkout("b", 10, _entry))  # b is now the most recent
    cache.release(cache.checkout("d", 10, _entry))
    assert set(cache._entries) == {"b", "d"}
    cache.release(cache.checkout("big", 60, lambda: _entry(60)))
    cache.release(cache.checkout("big2", 60, lambda: _entry(60)))
    assert cache.nbytes <= 100 and "big2" in cache._entries
    assert cache.checkout("huge", 101, lambda: _entry(101)) is None  # never kept
    assert "huge" not in cache._entries
    cache.clear()
    assert len(cache) == 0


def test_an_entry_serves_one_caller_at_a_time():
    cache = runner.GraphCache()
    held = cache.checkout("k", 10, _entry)
    assert held is not None
    result = []
    thread = threading.Thread(target=lambda: result.append(cache.checkout("k", 10, _entry)))
    thread.start()
    thread.join()
    assert result == [None]  # busy: that caller runs uncached
    cache.release(held)
    again = cache.checkout("k", 10, _entry)
    assert again is held
    cache.release(again)


@pytest.mark.parametrize("backend_name,device", TRITON)
def test_two_threads_never_replay_one_graph_at_once(monkeypatch, backend_name, device):
    fake = FakeGraphs(delay=0.05)
    monkeypatch.setattr(runner, "_graph_runtime", lambda device: fake)
    monkeypatch.setattr(runner, "GRAPH_CACHE", runner.GraphCache())
    # the Triton interpreter is not thread-safe: one kernel at a time (the graphs still overlap)
    from lcengine._triton import _common

    real_launch, one_at_a_time = _common.launch, threading.Lock()

    def serialized(*args):
        with one_at_a_time:
            real_launch(*args)

    monkeypatch.setattr(_common, "launch", serialized)
    problem = _problem()
    plain = _run(problem, device, graph=False)
    out, errors = [], []

    def work():
        try:
            out.append(_run(problem, device))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert fake.max_running == 1 and len(out) == 2
    # normally the second thread finds the entry busy and captures a graph of its own
    assert fake.captures in (1, 2)
    for result in out:
        _same(result, plain)


def test_cuda_capture_is_thread_local(monkeypatch):
    """CudaGraphs.capture asks for capture_error_mode="thread_local" on a side stream."""
    calls = []

    class Graph:
        def capture_begin(self, **kwargs):
            calls.append(("begin", kwargs))

        def capture_end(self):
            calls.append(("end", {}))

    class Stream:
        def __init__(self, device=None):
            pass

        def wait_stream(self, other):
            calls.append(("wait", {}))

    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: __import__("contextlib").nullcontext())
    graph = runner.CudaGraphs().capture(
        torch.device("cuda:0"), lambda: calls.append(("record", {})), []
    )
    assert isinstance(graph, Graph)
    assert [c[0] for c in calls] == ["wait", "begin", "record", "end"]
    assert calls[1][1] == {"capture_error_mode": "thread_local"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_cache_on_the_gpu():
    monkey_cache = runner.GraphCache()
    saved = runner.GRAPH_CACHE
    runner.GRAPH_CACHE = monkey_cache
    try:
        a, b = _problem(b=40, seed=1), _problem(b=40, seed=2)
        plain_a = _run(a, "cuda", graph=False, steps=60)
        plain_b = _run(b, "cuda", graph=False, steps=60)
        for problem, plain in ((a, plain_a), (b, plain_b), (a, plain_a)):
            _same(_run(problem, "cuda", steps=60), plain)
        assert len(monkey_cache) == 1
    finally:
        runner.GRAPH_CACHE = saved
