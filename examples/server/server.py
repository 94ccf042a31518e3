# SPDX-License-Identifier: Apache-2.0
"""An HTTP service for a fitted run: FastAPI, served by uvicorn, with dynamic batching.

    python examples/server/server.py --run runs/digits [--host 127.0.0.1] [--port 8000]
        [--max-batch 64] [--max-wait-ms 5] [--device cpu] [--threads N] [--log-level info]

Endpoints:

* ``POST /sample`` with ``{"request": "a0 !a1", "n": 4, "seed": 0, "mode": "actor"}``
  (``request`` may also be a list of words or a mapping, as ``ConditionalSampler.parse``
  takes; ``n`` defaults to 1, ``seed`` to 0, ``mode`` to "actor") returns ``{"images":
  nested lists, "shape": [n, *data_shape], "accepted": [bool ...], "targets": [[0/1 ...]],
  "attributes": [...], "mode": ..., "batched_with": k, "batch_rows": rows}``: the images and
  verdicts ``sampler.sample(request, n, seed=seed, mode=mode)`` gives, up to float rounding
  (see ``batching.py``).
  A bad request, ``n`` or ``seed`` is HTTP 400 with the sampler's message (which names the
  word or argument); a body that is not JSON or has fields of the wrong type is 422.
* ``GET /stats``: the batcher's counters (calls, rows, requests, batches ...).
* ``GET /info``: attributes, latent dimension, data shape, modes, batching settings.
* ``GET /healthz``: ``{"status": "ok"}`` once the sampler is loaded.

Concurrent ``/sample`` requests are gathered by :class:`batching.DynamicBatcher` into one
sampler call per mode (``ConditionalSampler.generate``: images and the critics' verdicts).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, Union

from fastapi import FastAPI, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # run as a script, imported from elsewhere, or by a test
    sys.path.insert(0, _HERE)

from batching import BatchResult, DynamicBatcher  # noqa: E402

log = logging.getLogger("lcengine.server")

Request = Union[str, list[str], dict[str, Union[StrictBool, StrictInt, str]]]


class SampleBody(BaseModel):
    """The body of ``POST /sample``."""

    model_config = ConfigDict(extra="forbid")

    request: Request = Field(description='attribute request: "a0 !a1", ["a0", "!a1"] or a map')
    n: StrictInt = Field(1, description="how many samples (1 .. max batch)")
    seed: StrictInt = Field(0, description="seed of the prior latents and the completion (>= 0)")
    mode: Literal["actor", "optimize"] = "actor"


def _answer(result: BatchResult, names: list[str]) -> JSONResponse:
    """The JSON of one answer, built (and encoded) off the event loop."""
    return JSONResponse(
        {
            "images": result.images.tolist(),
            "shape": list(result.images.shape),
            "accepted": result.accepted.tolist(),
            "targets": result.targets.int().tolist(),
            "attributes": names,
            "mode": result.mode,
            "batched_with": result.batched_with,
            "batch_rows": result.batch_rows,
        }
    )


def create_app(sampler: Any, *, max_batch: int = 64, max_wait_ms: float = 5.0) -> FastAPI:
    """The FastAPI application of a loaded ``ConditionalSampler``; its batcher starts with the
    application and stops (answering what is queued) when the application shuts down."""
    names = list(sampler.attribute_names)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.batcher = DynamicBatcher(sampler, max_batch=max_batch, max_wait_ms=max_wait_ms)
        try:
            yield
        finally:
            stopped = await run_in_threadpool(app.state.batcher.close, timeout=10.0)
            if not stopped:
                log.warning("the batcher's worker did not stop within 10 s")

    app = FastAPI(title="lcengine sampler", lifespan=lifespan)

    @app.post("/sample")
    async def sample(body: SampleBody) -> JSONResponse:
        batcher: DynamicBatcher = app.state.batcher
        try:  # builds the request's inputs: a bad word, n or seed fails here
            future = await run_in_threadpool(
                batcher.submit, body.request, body.n, seed=body.seed, mode=body.mode
            )
        except (ValueError, TypeError) as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        except RuntimeError as exc:  # closed: the server is shutting down
            raise HTTPException(status_code=503, detail=str(exc)) from None
        try:
            result = await asyncio.wrap_future(future)
        except ValueError as exc:  # refused by the sampler call (e.g. a mode it cannot do)
            raise HTTPException(status_code=400, detail=str(exc)) from None
        except Exception as exc:
            log.exception("sampling failed")
            raise HTTPException(
                status_code=500, detail=f"sampling failed: {type(exc).__name__}: {exc}"
            ) from None
        return await run_in_threadpool(_answer, result, names)

    @app.get("/stats")
    async def stats() -> dict:
        return app.state.batcher.stats()

    @app.get("/info")
    async def info() -> dict:
        return {
            "attributes": names,
            "num_data_attributes": int(sampler.num_data_attributes),
            "latent_dim": int(sampler.latent_dim),
            "data_shape": list(sampler.data_shape),
            "modes": ["actor", "optimize"],
            "max_batch": max_batch,
            "max_wait_ms": max_wait_ms,
            "device": str(sampler.device),
        }

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    return app


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def main(argv: Union[list[str], None] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="run folder (lcengine fit --run ...)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--max-batch", type=_positive_int, default=64, help="most rows per sampler call"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=_non_negative_float,
        default=5.0,
        help="how long the oldest queued request waits for others",
    )
    parser.add_argument("--device", default="cpu", help='"cpu", "cuda", "cuda:N" or "auto"')
    parser.add_argument(
        "--threads", type=_positive_int, default=None, help="torch's intra-op threads (CPU)"
    )
    parser.add_argument("--log-level", default="info", help="uvicorn's log level")
    args = parser.parse_args(argv)

    import torch
    import uvicorn

    from lcengine.method.sampler import ConditionalSampler

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    try:
        sampler = ConditionalSampler.from_run(args.run, device=args.device)
    except (ValueError, TypeError, OSError, ImportError) as exc:
        print(f"server.py: cannot load the run {args.run}: {exc}", file=sys.stderr)
        return 2
    app = create_app(sampler, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
