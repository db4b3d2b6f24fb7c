"""A shard served over the RPC by this tree against a shard served by another checkout
(`--baseline DIR`, e.g. `git worktree add /tmp/base main`), or with another environment
(`--baseline-env INDEX_X=0`): QPS and p99 at 8 closed-loop callers, servers started in
turn and interleaved, medians of the repeats, at the served batch cap (64) and at cap 1
(every search a single query). Both serve the same snapshot, built by this tree.

    python bench/engine_rpc_bench.py --quick --baseline /tmp/base    # 20k x 512, < 2 min
    python bench/engine_rpc_bench.py --baseline /tmp/base            # 100k x 512 IVF1024
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.rpc_bench import load, unit_vectors
from workers.redis_process import RedisProcess
from workers.rpc.client import SearchClient
from workers.rpc.connection import connect
from workers.rpc.errors import NoShardAvailable

ROOT = Path(__file__).resolve().parents[1]

# what a server process runs, inside the tree it is given (both trees have these names)
SERVE = """
import signal, sys, threading, os
from pathlib import Path
tree, url, snapshot = sys.argv[1], sys.argv[2], Path(sys.argv[3])
cap, dim = int(sys.argv[4]), int(sys.argv[5])
sys.path.insert(0, tree)
import faiss
from workers.index.shard import Shard
from workers.rpc.connection import connect
from workers.rpc.search import make_search_handler, shard_queue_key
from workers.rpc.server import RpcServer
faiss.omp_set_num_threads(1)
shard, _ = Shard.load(snapshot, snapshot.parent / f"w{os.getpid()}")
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
handler = make_search_handler(shard.search, shard=0, dim=dim)
RpcServer(connect(url), shard_queue_key(0), handler, batch_cap=cap).serve_forever(stop)
"""


def build(args: argparse.Namespace, directory: Path) -> Path:
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
    return directory / "snap"


def measure(args, url: str, snapshot: Path, variant: tuple[str, dict], cap: int, queries) -> dict:
    tree, env = variant
    cmd = [sys.executable, "-c", SERVE, tree, url, str(snapshot), str(cap), str(args.dim)]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": tree, **env}, cwd=tree)
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
    parser.add_argument("--baseline", default=str(ROOT), help="checkout serving the baseline")
    parser.add_argument("--baseline-env", action="append", default=[], help="NAME=VALUE")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--nprobe", type=int, default=8)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.n, args.nlist, args.seconds = 20_000, 256, 4.0
    baseline_env = dict(item.split("=", 1) for item in args.baseline_env)
    variants = {"this tree": (str(ROOT), {}), "baseline": (args.baseline, baseline_env)}
    queries = unit_vectors(4096, args.dim, seed=1)
    runs: dict[tuple[int, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp, RedisProcess(Path(tmp) / "redis") as redis_proc:
        snapshot = build(args, Path(tmp))
        for rep in range(args.repeats):
            names = list(variants) if rep % 2 == 0 else list(variants)[::-1]
            for cap in (64, 1):
                for name in names:
                    got = measure(args, redis_proc.url, snapshot, variants[name], cap, queries)
                    runs.setdefault((cap, name), []).append(got)
    print(f"shard IVF{args.nlist},Flat {args.n}x{args.dim} nprobe {args.nprobe} k={args.k}")
    print(f"baseline: {args.baseline} {baseline_env or ''}")
    print(f"RPC, 8 closed-loop callers, {args.seconds:.0f}s a cell, {args.repeats} repeats")
    print(f"{'cap':>4} {'server':>10} {'q/s runs':>24} {'median':>8} {'p99 ms':>7}")
    summary = []
    for cap in (64, 1):
        for name in variants:
            rs = runs[cap, name]
            qps = [r["qps"] for r in rs]
            p99 = float(np.median([r["p99"] for r in rs]))
            runs_text = " ".join(f"{q:.0f}" for q in qps)
            print(f"{cap:>4} {name:>10} {runs_text:>24} {np.median(qps):8.0f} {p99:7.2f}")
        this = [r["qps"] for r in runs[cap, "this tree"]]
        base = [r["qps"] for r in runs[cap, "baseline"]]
        spread = max((max(v) - min(v)) / np.median(v) for v in (this, base))
        ratio = np.median(this) / np.median(base)
        summary.append(f"cap {cap}: this/baseline x{ratio:.3f} (run-to-run spread {spread:.0%})")
    print("summary: " + ", ".join(summary))


if __name__ == "__main__":
    main()
