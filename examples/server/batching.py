# SPDX-License-Identifier: Apache-2.0
"""Dynamic batching for :class:`lcengine.method.sampler.ConditionalSampler`.

Requests that arrive close together are answered by one sampler call::

    from batching import DynamicBatcher

    with DynamicBatcher(sampler, max_batch=64, max_wait_ms=5) as batcher:
        future = batcher.submit("a0 !a1", 4, seed=0, mode="actor")  # concurrent.futures.Future
        result = future.result()                                     # BatchResult

Each request's inputs are built on the caller's thread with ``sampler.inputs(request, n,
seed=seed)``, so a bad request raises ``ValueError`` at once, from :meth:`DynamicBatcher.submit`,
and never reaches a batch. One worker thread takes the queued requests in arrival order until
they hold ``max_batch`` rows or ``max_wait_ms`` have passed since the oldest one arrived,
concatenates their targets, masks and latents, calls ``sampler.generate(targets, latents,
mode=mode, mask=mask)`` once per mode present, and splits the images and the critics' verdicts
(``accepted``) back by rows.

The rows of a batched call are independent, so each request gets the images it would get
alone, up to floating-point rounding: a batched matrix product may sum in another order than a
one-request product (differences of about 1e-7 in actor mode; the optimizer's steps can grow
them to about 1e-6).

If a batched call raises, the worker calls the sampler again for each request of the group on
its own, so an error reaches only the request that caused it. :meth:`DynamicBatcher.close`
stops the worker and waits for it; requests still queued are answered first (``drain=True``)
or failed with ``RuntimeError`` (``drain=False``).

This module needs only torch; it imports nothing from lcengine, and it accepts any sampler
with ``inputs(request, n, seed=...)`` and ``generate(targets, latents, mode=..., mask=...)``
returning an object with ``images`` and ``accepted``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

MODES = ("actor", "optimize")


@dataclass
class BatchResult:
    """What the future of :meth:`DynamicBatcher.submit` resolves to (CPU tensors).

    Attributes:
        images: the request's images, float32. # [n, *data_shape]
        accepted: the critics accept the row (the optimizer's stopping rule). # [n] bool
        targets: its full target vectors (requested values, the rest completed). # [n, A]
        mask: its requested attributes. # [n, A] bool
        mode: "actor" or "optimize".
        batched_with: how many requests shared the sampler call (1 when alone).
        batch_rows: how many rows that call had.
    """

    images: torch.Tensor
    accepted: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    mode: str
    batched_with: int
    batch_rows: int


@dataclass
class _Item:
    targets: torch.Tensor  # [n, A]
    mask: torch.Tensor  # [n, A] bool
    latents: torch.Tensor  # [n, D]
    mode: str
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)

    @property
    def rows(self) -> int:
        return int(self.targets.shape[0])


class DynamicBatcher:
    """Gathers concurrent sampler requests into one call (see the module docstring).

    Args:
        sampler: a ``ConditionalSampler`` (or anything with its ``inputs`` and ``generate``).
        max_batch: the most rows one batch holds; a request of more rows is refused.
        max_wait_ms: how long the oldest queued request waits for others before its batch
            runs (0: run what is queued at once).
        name: the worker thread's name.
    """

    def __init__(
        self,
        sampler: Any,
        *,
        max_batch: int = 64,
        max_wait_ms: float = 5.0,
        name: str = "lcengine-batcher",
    ) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an int >= 1, got {max_batch!r}")
        if not isinstance(max_wait_ms, (int, float)) or not max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be a number >= 0, got {max_wait_ms!r}")
        self.sampler = sampler
        self.max_batch = max_batch
        self.max_wait = float(max_wait_ms) / 1000.0
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._closed = False
        self._drain = True
        self._stats = {
            "submitted": 0,  # requests queued by submit()
            "requests": 0,  # requests answered by the worker (with images or an error)
            "rows": 0,  # rows sent to the sampler in batched calls
            "calls": 0,  # sampler calls, fallback calls included
            "batches": 0,  # batches taken from the queue
            "fallback_calls": 0,  # one-request calls after a batched call raised
            "errors": 0,  # requests answered with an exception by the worker
            "max_rows_per_call": 0,
        }
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ client side
    def submit(self, request: Any, n: int, *, seed: int = 0, mode: str = "actor") -> Future:
        """Queues ``n`` samples of a request; returns a future of :class:`BatchResult`.

        Raises:
            ValueError: a bad request, ``n``, ``seed`` or ``mode`` (from ``sampler.inputs``,
                naming the word or argument), or ``n > max_batch``.
            TypeError: arguments of the wrong type (from ``sampler.inputs``).
            RuntimeError: the batcher is closed.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(n, int) and not isinstance(n, bool) and n > self.max_batch:
            raise ValueError(f"n must be at most max_batch={self.max_batch}, got {n}")
        if self._closed:
            raise RuntimeError("DynamicBatcher is closed")
        targets, mask, latents = self.sampler.inputs(request, n, seed=seed)
        item = _Item(targets, mask, latents, mode)
        with self._cond:
            if self._closed:
                raise RuntimeError("DynamicBatcher is closed")
            self._queue.append(item)
            self._queued_rows += item.rows
            self._stats["submitted"] += 1
            self._cond.notify()
        return item.future

    def sample(
        self,
        request: Any,
        n: int,
        *,
        seed: int = 0,
        mode: str = "actor",
        timeout: Optional[float] = None,
    ) -> BatchResult:
        """:meth:`submit`, then wait for the result (re-raising the request's error)."""
        return self.submit(request, n, seed=seed, mode=mode).result(timeout)

    def stats(self) -> dict[str, Any]:
        """Counters: requests, rows, calls, batches, fallback_calls, errors, max_rows_per_call,
        and the queue now (queued_requests, queued_rows)."""
        with self._cond:
            out = dict(self._stats)
            out.update(queued_requests=len(self._queue), queued_rows=self._queued_rows)
        out.update(max_batch=self.max_batch, max_wait_ms=self.max_wait * 1000.0)
        return out

    def close(self, *, drain: bool = True, timeout: Optional[float] = 10.0) -> bool:
        """Stops taking requests and stops the worker.

        Args:
            drain: answer the requests still queued (True) or fail them with RuntimeError.
            timeout: seconds to wait for the worker (None: no limit). The worker is a daemon
                thread, so a sampler call that never returns cannot keep the process alive.

        Returns:
            Whether the worker has stopped.
        """
        with self._cond:
            self._closed = True
            self._drain = self._drain and drain
            self._cond.notify_all()
        if self._worker is not threading.current_thread():
            self._worker.join(timeout)
        return not self._worker.is_alive()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "DynamicBatcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ worker side
    def _take(self) -> Optional[list[_Item]]:
        """Waits for a batch; None when closed and nothing is left to answer."""
        with self._cond:
            while True:
                if self._queue and self._closed and not self._drain:
                    self._fail_queued(RuntimeError("DynamicBatcher closed before this request ran"))
                if not self._queue:
                    if self._closed:
                        return None
                    self._cond.wait()
                    continue
                deadline = self._queue[0].arrived + self.max_wait
                remaining = deadline - time.monotonic()
                if self._queued_rows >= self.max_batch or remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            batch, rows = [], 0
            while self._queue and rows + self._queue[0].rows <= self.max_batch:
                item = self._queue.popleft()
                self._queued_rows -= item.rows
                if item.future.cancelled():  # its caller gave up: skip the work
                    continue
                batch.append(item)
                rows += item.rows
            self._stats["batches"] += 1
            return batch

    def _fail_queued(self, exc: BaseException) -> None:
        while self._queue:
            item = self._queue.popleft()
            self._stats["requests"] += 1
            self._stats["errors"] += 1
            _resolve(item.future, exc=exc)
        self._queued_rows = 0

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            for mode in MODES:
                group = [item for item in batch if item.mode == mode]
                if group:
                    try:
                        self._answer(group, mode)
                    except BaseException as exc:  # the worker must not die
                        for item in group:
                            _resolve(item.future, exc=exc)

    def _count(self, **increments: int) -> None:
        with self._cond:
            for key, value in increments.items():
                self._stats[key] += value

    def _answer(self, group: list[_Item], mode: str) -> None:
        """One sampler call for the group; on an error, one call per request."""
        rows = sum(item.rows for item in group)
        with self._cond:
            self._stats["calls"] += 1
            self._stats["rows"] += rows
            self._stats["max_rows_per_call"] = max(self._stats["max_rows_per_call"], rows)
        try:
            images, accepted = self._call(group, mode)
        except Exception as exc:
            if len(group) == 1:
                self._count(requests=1, errors=1)
                _resolve(group[0].future, exc=exc)
                return
            for item in group:  # isolate the request that failed the batch
                self._count(calls=1, fallback_calls=1)
                try:
                    one = self._call([item], mode)
                except Exception as exc_one:
                    self._count(requests=1, errors=1)
                    _resolve(item.future, exc=exc_one)
                else:
                    self._count(requests=1)
                    _resolve(item.future, result=self._result(item, *one, mode, 1, item.rows))
            return
        self._count(requests=len(group))
        start = 0
        for item in group:
            part = slice(start, start + item.rows)
            start += item.rows
            result = self._result(item, images[part], accepted[part], mode, len(group), rows)
            _resolve(item.future, result=result)

    def _call(self, group: list[_Item], mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        if len(group) == 1:
            targets, mask, latents = group[0].targets, group[0].mask, group[0].latents
        else:
            targets = torch.cat([item.targets for item in group])  # [B, A]
            mask = torch.cat([item.mask for item in group])  # [B, A]
            latents = torch.cat([item.latents for item in group])  # [B, D]
        out = self.sampler.generate(targets, latents, mode=mode, mask=mask)
        images, accepted = out.images, out.accepted  # [B, *data_shape], [B]
        if images.shape[0] != targets.shape[0] or accepted.shape != (targets.shape[0],):
            raise RuntimeError(
                f"the sampler returned {images.shape[0]} images and {list(accepted.shape)} "
                f"verdicts for {targets.shape[0]} inputs"
            )
        return images.detach().cpu(), accepted.detach().cpu()

    @staticmethod
    def _result(
        item: _Item, images: torch.Tensor, accepted: torch.Tensor, mode: str, k: int, rows: int
    ) -> BatchResult:
        return BatchResult(images, accepted, item.targets.cpu(), item.mask.cpu(), mode, k, rows)


def _resolve(future: Future, *, result: Any = None, exc: Optional[BaseException] = None) -> None:
    """Sets a future's outcome unless it is already done (cancelled by its caller)."""
    if future.done() or not future.set_running_or_notify_cancel():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


__all__ = ["BatchResult", "DynamicBatcher", "MODES"]
