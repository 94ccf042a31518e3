# SPDX-License-Identifier: Apache-2.0
"""A small load generator for server.py: concurrent clients (threads, urllib), then the
throughput, the latency percentiles and how many sampler calls the server made.

    python examples/server/load.py --url http://127.0.0.1:8000 --clients 32 --requests 20 \
        --request "a0 !a1" --n 4 --mode actor
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _call(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with _OPENER.open(req, timeout=120) as resp:
        return json.loads(resp.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--clients", type=int, default=32, help="concurrent client threads")
    parser.add_argument("--requests", type=int, default=20, help="requests per client")
    parser.add_argument("--request", default="a0 !a1")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--mode", default="actor", choices=["actor", "optimize"])
    args = parser.parse_args(argv)

    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(args.clients)

    def client(index: int) -> None:
        barrier.wait()
        for i in range(args.requests):
            body = {"request": args.request, "n": args.n, "seed": index * 100_000 + i}
            t0 = time.perf_counter()
            try:
                _call(args.url + "/sample", {**body, "mode": args.mode})
            except Exception as exc:  # report, keep loading
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)

    before = _call(args.url + "/stats")
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = _call(args.url + "/stats")

    done = len(latencies)
    lat = sorted(latencies)
    calls = after["calls"] - before["calls"]
    pct = (lambda q: 1000 * lat[min(done - 1, int(q * done))]) if done else (lambda q: 0.0)
    print(
        json.dumps(
            {
                "requests": done,
                "failures": len(failures),
                "wall_s": round(wall, 3),
                "requests_per_s": round(done / wall, 1),
                "samples_per_s": round(done * args.n / wall, 1),
                "latency_ms_p50": round(pct(0.50), 2),
                "latency_ms_p95": round(pct(0.95), 2),
                "sampler_calls": calls,
                "rows_per_call": round((after["rows"] - before["rows"]) / max(calls, 1), 2),
            }
        )
    )
    for line in failures[:5]:
        print(line, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
