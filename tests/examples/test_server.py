# SPDX-License-Identifier: Apache-2.0
"""examples/server: the dynamic batcher (torch only) and the FastAPI service end to end (a
uvicorn subprocess on a free localhost port), on a toy run fitted once for the module."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from lcengine.method.sampler import ConditionalSampler
from support.method_toys import fit_toy_run

ROOT = Path(__file__).resolve().parents[2]
SERVER_DIR = ROOT / "examples" / "server"
HAVE_SERVER_DEPS = all(importlib.util.find_spec(m) is not None for m in ("fastapi", "uvicorn"))
needs_server_deps = pytest.mark.skipif(
    not HAVE_SERVER_DEPS,
    reason="fastapi and uvicorn are not installed (pip install fastapi uvicorn)",
)

# Batched rows are summed in another order than one request's rows (BLAS blocking): actor
# mode differs by ~1e-7, the optimizer's 20 Adam steps grow that to ~2e-6 (measured).
TOLERANCE = {"actor": dict(atol=1e-6, rtol=1e-6), "optimize": dict(atol=1e-5, rtol=1e-5)}
WORDS = ["a0", "!a0", "a1 !a2", "a0 !a1", "a1 a2", "!a0 a2", "a0 a1 a2", "!a1"]


def _load_batching():
    name = "lcengine_examples_server_batching"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SERVER_DIR / "batching.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


batching = _load_batching()


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    return fit_toy_run(tmp_path_factory.mktemp("server") / "toy")


@pytest.fixture(scope="module")
def sampler(toy_run):
    return ConditionalSampler.from_run(toy_run)


class CountingSampler:
    """Counts the sampler's batched calls (rows per call); fails a call holding a poisoned
    row with ValueError."""

    def __init__(self, sampler, poison=None):
        self.sampler = sampler
        self.poison = poison  # [D] latents of one row, or None
        self.calls: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def inputs(self, request, n, *, seed=0):
        return self.sampler.inputs(request, n, seed=seed)

    def generate(self, targets, latents, *, mode="actor", mask=None):
        with self._lock:
            self.calls.append((mode, int(targets.shape[0])))
        if self.poison is not None and bool((latents == self.poison).all(dim=1).any()):
            raise ValueError("poisoned row")
        return self.sampler.generate(targets, latents, mode=mode, mask=mask)


def _alone(sampler, request, n, seed, mode):
    """What the request gives on its own (``sampler.sample``): targets, images, verdicts."""
    out = sampler.sample(request, n, seed=seed, mode=mode)
    return out.targets, out.images, out.accepted


def _cases(count):
    """(request, n, seed, mode): varied requests, sizes and seeds; every fourth optimizes."""
    return [
        (WORDS[i % len(WORDS)], 1 + i % 5, 100 + 7 * i, "optimize" if i % 4 == 3 else "actor")
        for i in range(count)
    ]


# ---------------------------------------------------------------------------------------------
# The batcher.
# ---------------------------------------------------------------------------------------------


def test_batcher_gathers_concurrent_requests_into_fewer_calls_with_the_same_images(sampler):
    counting = CountingSampler(sampler)
    cases = _cases(16)  # 46 rows: one batch per mode when all arrive within max_wait
    barrier = threading.Barrier(len(cases))

    def client(case):
        request, n, seed, mode = case
        barrier.wait(timeout=30)
        return batcher.sample(request, n, seed=seed, mode=mode, timeout=60)

    with batching.DynamicBatcher(counting, max_batch=64, max_wait_ms=250) as batcher:
        with ThreadPoolExecutor(len(cases)) as pool:
            results = list(pool.map(client, cases))
        stats = batcher.stats()

    for (request, n, seed, mode), got in zip(cases, results):
        targets, want, accepted = _alone(sampler, request, n, seed, mode)
        assert got.mode == mode and got.images.shape == (n, 5)
        assert torch.equal(got.targets, targets) and torch.equal(got.accepted, accepted)
        torch.testing.assert_close(got.images, want, **TOLERANCE[mode])
    assert len(counting.calls) < len(cases), counting.calls
    assert max(r.batched_with for r in results) > 1
    assert sum(rows for _, rows in counting.calls) == sum(c[1] for c in cases)
    assert stats["requests"] == stats["submitted"] == len(cases)
    assert stats["calls"] == len(counting.calls) and stats["rows"] == sum(c[1] for c in cases)
    assert stats["errors"] == 0 and stats["queued_requests"] == 0


def test_batcher_a_failing_request_does_not_fail_the_others(sampler):
    cases = [("a0", 2, 1, "actor"), ("!a1", 3, 2, "actor"), ("a1 a2", 1, 3, "actor")]
    poison = sampler.inputs("a0 !a1", 2, seed=9)[2][0]  # the first latents of that request
    counting = CountingSampler(sampler, poison=poison)
    with batching.DynamicBatcher(counting, max_batch=64, max_wait_ms=60_000) as batcher:
        futures = [batcher.submit(r, n, seed=s, mode=m) for r, n, s, m in cases[:2]]
        bad = batcher.submit("a0 !a1", 2, seed=9)
        futures.append(batcher.submit(*cases[2][:2], seed=cases[2][2]))
        # one batch (the close flushes it), which fails; then one call per request
        assert batcher.close(timeout=30)
        stats = batcher.stats()
    with pytest.raises(ValueError, match="poisoned row"):
        bad.result(timeout=1)
    for (request, n, seed, mode), future in zip(cases, futures):
        result = future.result(timeout=1)
        assert result.batched_with == 1
        torch.testing.assert_close(result.images, _alone(sampler, request, n, seed, mode)[1])
    assert counting.calls[0] == ("actor", 8) and len(counting.calls) == 5
    assert stats["fallback_calls"] == 4 and stats["errors"] == 1 and stats["requests"] == 4


def test_batcher_refuses_bad_requests_at_submit_naming_them(sampler):
    with batching.DynamicBatcher(sampler, max_batch=8, max_wait_ms=1) as batcher:
        with pytest.raises(ValueError, match="bogus"):
            batcher.submit("a0 bogus", 2)
        with pytest.raises(ValueError, match="n must be at most max_batch=8"):
            batcher.submit("a0", 9)
        with pytest.raises(ValueError, match="n must be"):
            batcher.submit("a0", 0)
        with pytest.raises(ValueError, match="seed"):
            batcher.submit("a0", 1, seed=-1)
        with pytest.raises(ValueError, match="mode"):
            batcher.submit("a0", 1, mode="greedy")
        assert batcher.sample("a0", 2, timeout=30).images.shape == (2, 5)  # still serving
        assert batcher.stats()["submitted"] == 1
    with pytest.raises(ValueError, match="max_batch"):
        batching.DynamicBatcher(sampler, max_batch=0)


def test_batcher_fills_batches_up_to_max_batch_rows_in_arrival_order(sampler):
    counting = CountingSampler(sampler)
    with batching.DynamicBatcher(counting, max_batch=8, max_wait_ms=60_000) as batcher:
        t0 = time.monotonic()
        futures = [batcher.submit("a0", n, seed=n) for n in (5, 5, 3)]
        results = [f.result(timeout=30) for f in futures]  # full batches run without waiting
        assert time.monotonic() - t0 < 30
    assert counting.calls == [("actor", 5), ("actor", 8)]
    assert [(r.batched_with, r.batch_rows) for r in results] == [(1, 5), (2, 8), (2, 8)]


def test_batcher_close_answers_or_fails_queued_requests_without_hanging(sampler):
    batcher = batching.DynamicBatcher(sampler, max_batch=64, max_wait_ms=60_000)
    queued = batcher.submit("a1", 3, seed=4)
    t0 = time.monotonic()
    assert batcher.close(drain=True, timeout=30) and time.monotonic() - t0 < 30
    torch.testing.assert_close(
        queued.result(timeout=1).images, _alone(sampler, "a1", 3, 4, "actor")[1]
    )
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit("a1", 1)

    batcher = batching.DynamicBatcher(sampler, max_batch=64, max_wait_ms=60_000)
    queued = batcher.submit("a1", 3, seed=4)
    assert batcher.close(drain=False, timeout=30)
    with pytest.raises(RuntimeError, match="closed before this request ran"):
        queued.result(timeout=1)


# ---------------------------------------------------------------------------------------------
# The service, end to end.
# ---------------------------------------------------------------------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost: no proxy


def _http(url, body=None, *, raw=None, timeout=60):
    """(status, decoded JSON) of a GET, or a POST of ``body`` as JSON (``raw``: bytes as they
    are)."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(toy_run, tmp_path_factory):
    """The service of the toy run in a subprocess: its base URL. Stopped with SIGTERM at the
    end; a server that does not stop within 20 s is killed and fails the teardown."""
    if not HAVE_SERVER_DEPS:
        pytest.skip("fastapi and uvicorn are not installed (pip install fastapi uvicorn)")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("server_log") / "server.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "tests"), env.get("PYTHONPATH", "")) if p
    )  # the toy application lives in tests/support
    argv = [sys.executable, str(SERVER_DIR / "server.py"), "--run", str(toy_run)]
    argv += ["--port", str(port), "--max-batch", "64", "--max-wait-ms", "250"]
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv + ["--log-level", "warning"], stdout=log, stderr=log, env=env)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if _http(base + "/healthz", timeout=2) == (200, {"status": "ok"}):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready within 90 s:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)
                pytest.fail(f"server did not stop within 20 s:\n{log_path.read_text()}")


@needs_server_deps
def test_server_batches_concurrent_clients_and_answers_each_as_alone(server, sampler):
    cases = _cases(24)
    before = _http(server + "/stats")[1]
    barrier = threading.Barrier(len(cases))

    def client(case):
        request, n, seed, mode = case
        barrier.wait(timeout=30)
        return _http(server + "/sample", {"request": request, "n": n, "seed": seed, "mode": mode})

    with ThreadPoolExecutor(len(cases)) as pool:
        answers = list(pool.map(client, cases))
    after = _http(server + "/stats")[1]

    for (request, n, seed, mode), (status, body) in zip(cases, answers):
        assert status == 200, body
        targets, want, accepted = _alone(sampler, request, n, seed, mode)
        assert body["shape"] == [n, 5] and body["mode"] == mode
        assert body["accepted"] == accepted.tolist()
        assert body["attributes"] == ["a0", "a1", "a2"]
        assert body["targets"] == targets.int().tolist()
        images = torch.from_numpy(np.asarray(body["images"], dtype=np.float32))
        torch.testing.assert_close(images, want, **TOLERANCE[mode])
    calls = after["calls"] - before["calls"]
    requests = after["requests"] - before["requests"]
    assert requests == len(cases) and 1 <= calls < requests, (before, after)
    assert after["rows"] - before["rows"] == sum(c[1] for c in cases)
    assert max(body["batched_with"] for _, body in answers) > 1


@needs_server_deps
def test_server_request_forms_give_the_same_samples(server):
    forms = ["a0 !a1", ["a0", "!a1"], {"a0": 1, "a1": 0}, {"a0": True, "a1": False}]
    answers = [_http(server + "/sample", {"request": f, "n": 3, "seed": 5}) for f in forms]
    assert all(status == 200 for status, _ in answers), answers
    assert all(body["images"] == answers[0][1]["images"] for _, body in answers)


@needs_server_deps
def test_server_user_errors_are_4xx_naming_the_problem(server):
    url = server + "/sample"
    status, body = _http(url, {"request": "a0 bogus", "n": 2})
    assert status == 400 and "bogus" in body["detail"]
    status, body = _http(url, {"request": "a0", "n": 65})
    assert status == 400 and "n must be at most max_batch=64" in body["detail"]
    status, body = _http(url, {"request": "a0", "n": 0})
    assert status == 400 and "n must be" in body["detail"]
    status, body = _http(url, {"request": "a0", "seed": -3})
    assert status == 400 and "seed" in body["detail"]
    status, body = _http(url, {"request": "a0 !a0"})
    assert status == 400 and "a0" in body["detail"]
    for bad, field in (
        ({"request": "a0", "mode": "greedy"}, "mode"),
        ({"request": "a0", "n": "4"}, "n"),
        ({"request": "a0", "n": 2.5}, "n"),
        ({"n": 2}, "request"),
        ({"request": "a0", "colour": 1}, "colour"),
    ):
        status, body = _http(url, bad)
        assert status == 422 and body["detail"][0]["loc"][-1] == field, (bad, body)
    status, body = _http(url, raw=b"{not json")
    assert status == 422 and body["detail"][0]["type"] == "json_invalid"
    status, body = _http(url, {"request": "a2", "n": 1})  # still serving
    assert status == 200 and body["shape"] == [1, 5]


@needs_server_deps
def test_server_info_and_stats(server):
    status, info = _http(server + "/info")
    assert status == 200 and info["attributes"] == ["a0", "a1", "a2"]
    assert info["latent_dim"] == 4 and info["data_shape"] == [5] and info["max_batch"] == 64
    status, stats = _http(server + "/stats")
    assert status == 200 and {"calls", "rows", "requests", "batches"} <= set(stats)
