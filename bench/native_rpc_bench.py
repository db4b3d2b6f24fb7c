"""Does the compiled single-query path pay end to end? RPC QPS at concurrency 8, a shard
served with ``INDEX_NATIVE=1`` (the C extension's lock, query check and grouping) against
``INDEX_NATIVE=0`` (their Python twins), servers started in turn, interleaved, medians of
the repeats; at the served batch cap (64) and at cap 1 (every search a single query, the
case the extension was written for).

    python bench/native_rpc_bench.py --quick    # 20k x 512 IVF256, < 2 minutes
    python bench/native_rpc_bench.py            # 100k x 512 IVF1024
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.rpc_bench import load, unit_vectors
from workers.redis_process import RedisProcess
from workers.rpc.client import SearchClient
from workers.rpc.connection import connect
from workers.rpc.errors import NoShardAvailable


def build(args: argparse.Namespace, directory: Path) -> None:
    from workers.index.shard import Shard
    from workers.index.spec import SearchParams
    from workers.index.types import VectorAttrs

    x = unit_vectors(args.n, args.dim, seed=0)
    ids = np.arange(args.n, dtype=np.int64)
    attrs = VectorAttrs.build(ids // 2, ids % 100, (ids % 50).astype(np.float32), ids % 3 != 0)
    shard = Shard(args.dim, "bench", f"IVF{args.nlist},Flat", work_dir=directory / "work")
    shard.upsert(ids, x, attrs)
    shard.compact()
    shard.params = SearchParams(nprobe=args.nprobe)
    shard.snapshot(directory / "snap", "0-0")


def serve(args: argparse.Namespace) -> None:
    import faiss

    from workers.index.shard import Shard
    from workers.rpc.search import make_search_handler, shard_queue_key
    from workers.rpc.server import RpcServer

    faiss.omp_set_num_threads(1)
    shard, _ = Shard.load(Path(args.snapshot), Path(args.snapshot).parent / f"w{os.getpid()}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    handler = make_search_handler(shard.search, shard=0, dim=args.dim)
    RpcServer(
        connect(args.redis_url), shard_queue_key(0), handler, batch_cap=args.batch_cap
    ).serve_forever(stop)


def measure(args, url: str, snapshot: Path, native: str, cap: int, queries) -> dict:
    cmd = [sys.executable, __file__, "--serve", "--redis-url", url, "--snapshot", str(snapshot)]
    cmd += ["--batch-cap", str(cap), "--dim", str(args.dim)]
    proc = subprocess.Popen(cmd, env={**os.environ, "INDEX_NATIVE": native})
    client = SearchClient(connect(url), n_shards=1)
    deadline = time.monotonic() + 120
    while True:
        try:
            client.search(queries[0], args.k, timeout_s=1.0)
            break
        except NoShardAvailable:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server never answered") from None
    load(client, queries, args.k, 8, 1.0)  # warm
    result = load(client, queries, args.k, 8, args.seconds)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--nprobe", type=int, default=8)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--snapshot", help=argparse.SUPPRESS)
    parser.add_argument("--batch-cap", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    if args.quick:
        args.n, args.nlist, args.seconds = 20_000, 256, 4.0
    queries = unit_vectors(4096, args.dim, seed=1)
    with tempfile.TemporaryDirectory() as tmp, RedisProcess(Path(tmp) / "redis") as redis_proc:
        build(args, Path(tmp))
        snapshot = Path(tmp) / "snap"
        runs: dict[tuple[int, str], list[dict]] = {}
        for rep in range(args.repeats):
            order = ("1", "0") if rep % 2 == 0 else ("0", "1")
            for cap in (64, 1):
                for native in order:
                    got = measure(args, redis_proc.url, snapshot, native, cap, queries)
                    runs.setdefault((cap, native), []).append(got)
    print(f"shard IVF{args.nlist},Flat {args.n}x{args.dim} nprobe {args.nprobe} k={args.k}")
    print(f"RPC, 8 closed-loop callers, {args.seconds:.0f}s a cell, {args.repeats} repeats")
    print(f"{'cap':>4} {'INDEX_NATIVE':>12} {'q/s runs':>24} {'median':>8} {'p99 ms':>7}")
    ratios = {}
    for cap in (64, 1):
        for native in ("1", "0"):
            rs = runs[cap, native]
            qps = [r["qps"] for r in rs]
            p99 = float(np.median([r["p99"] for r in rs]))
            runs_text = " ".join(f"{q:.0f}" for q in qps)
            print(f"{cap:>4} {native:>12} {runs_text:>24} {np.median(qps):8.0f} {p99:7.2f}")
        on = [r["qps"] for r in runs[cap, "1"]]
        off = [r["qps"] for r in runs[cap, "0"]]
        noise = max((max(v) - min(v)) / np.median(v) for v in (on, off))
        ratios[cap] = (float(np.median(on) / np.median(off)), float(noise))
    summary = ", ".join(
        f"cap {cap}: compiled/python x{r:.3f} (run-to-run spread {n:.1%})"
        for cap, (r, n) in ratios.items()
    )
    print(f"summary: {summary}")


if __name__ == "__main__":
    main()
