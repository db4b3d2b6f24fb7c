"""A closed-loop load generator, run as its own process so it never shares a GIL with a server.

`--concurrency` threads each send a request, wait for the answer, send the next one, for
`--seconds` after `--warmup` seconds (not recorded). Two targets:

- http: GET paths (one per line in `--paths`) on keep-alive http.client connections;
  answers whose JSON says `"partial": true` are counted.
- rpc: `SearchClient.search` of the rows of `--queries` (.npy float32) over all shards.

Prints one JSON object: latencies in ms, the server's own `took_ms` of each answer (http:
the search and product join inside the view; rpc: the client's fan-out and merge),
statuses, partial answers, achieved QPS.

    python bench/closed_loop.py http --base http://127.0.0.1:8000 --paths p.txt -c 8 -s 10
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOOK = re.compile(rb'"took_ms":\s*([0-9.]+)')


def http_caller(base: str, paths: list[str]):
    parts = urlsplit(base)

    def make():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

        def call(i: int) -> tuple[int, bool, float]:
            nonlocal conn
            try:
                conn.request("GET", paths[i % len(paths)])
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                return 599, False, float("nan")
            took = TOOK.search(body)
            took_ms = float(took.group(1)) if took else float("nan")
            return response.status, b'"partial":true' in body, took_ms

        return call

    return make


def rpc_caller(redis_url: str, n_shards: int, queries: np.ndarray, k: int, timeout_s: float):
    from workers.rpc.client import SearchClient
    from workers.rpc.connection import connect
    from workers.rpc.errors import NoShardAvailable

    client = SearchClient(connect(redis_url), n_shards)

    def make():
        def call(i: int) -> tuple[int, bool, float]:
            try:
                got = client.search(queries[i % len(queries)], k, timeout_s=timeout_s)
            except NoShardAvailable:
                return 503, False, float("nan")
            return 200, got.partial, got.took_ms

        return call

    return make


def run(make, concurrency: int, seconds: float, warmup: float) -> dict:
    start = time.perf_counter()
    record_from, stop_at = start + warmup, start + warmup + seconds
    lat: list[list[float]] = [[] for _ in range(concurrency)]
    took: list[list[float]] = [[] for _ in range(concurrency)]
    statuses: list[Counter] = [Counter() for _ in range(concurrency)]
    partial = [0] * concurrency

    def worker(t: int) -> None:
        call, i = make(), t * 7919
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            status, was_partial, took_ms = call(i)
            i += 1
            if t0 >= record_from:
                lat[t].append((time.perf_counter() - t0) * 1e3)
                took[t].append(took_ms)
                statuses[t][status] += 1
                partial[t] += was_partial

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - record_from
    ms = [x for per in lat for x in per]
    total = sum(statuses, Counter())
    return {
        "ms": ms,
        "took_ms": [x for per in took for x in per],
        "qps": len(ms) / elapsed,
        "status": {str(k): v for k, v in total.items()},
        "partial": sum(partial),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=["http", "rpc"])
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-s", "--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--base", help="http: base URL")
    parser.add_argument("--paths", type=Path, help="http: file of GET paths")
    parser.add_argument("--redis-url", help="rpc: Redis URL")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--queries", type=Path, help="rpc: .npy of float32 query rows")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=2.0, help="rpc deadline, seconds")
    args = parser.parse_args()
    if args.target == "http":
        make = http_caller(args.base, args.paths.read_text().split())
    else:
        queries = np.load(args.queries, allow_pickle=False).astype(np.float32)
        make = rpc_caller(args.redis_url, args.shards, queries, args.k, args.timeout)
    print(json.dumps(run(make, args.concurrency, args.seconds, args.warmup)))


if __name__ == "__main__":
    main()
