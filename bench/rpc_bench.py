"""What the Redis RPC costs: shard search through RPC vs the same search in-process.

1. Latency of single-query searches, sequential: p50/p99 in-process vs through the RPC
   (RpcServer in a separate process, private redis-server, all on loopback).
2. Throughput at concurrency 1/8/32 (client threads) with batch cap 1 vs the default cap.

Synthetic unit vectors (numpy, seeded), a FAISS IVF-Flat (default) or exact flat index.

    .venv/bin/python bench/rpc_bench.py            # 100k x 512, IVF256 nprobe 8
    .venv/bin/python bench/rpc_bench.py --quick    # 20k x 512, < 1 minute
    .venv/bin/python bench/rpc_bench.py --index flat
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss

from workers.index.types import SearchFilter, SearchResult
from workers.redis_process import RedisProcess
from workers.rpc.client import SearchClient
from workers.rpc.connection import connect
from workers.rpc.errors import NoShardAvailable
from workers.rpc.search import make_search_handler, shard_queue_key
from workers.rpc.server import RpcServer

OUT = Path(__file__).resolve().parent / "out"


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 20000):  # blocks: no float64 temporaries of the whole set
        block = rng.standard_normal((min(20000, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def build_index(args: argparse.Namespace) -> faiss.Index:
    x = unit_vectors(args.n, args.dim, seed=0)
    if args.index == "flat":
        index = faiss.IndexFlatIP(args.dim)
    else:
        index = faiss.IndexIVFFlat(
            faiss.IndexFlatIP(args.dim), args.dim, args.nlist, faiss.METRIC_INNER_PRODUCT
        )
        index.train(x[: max(args.nlist * 64, 10000)])
        index.nprobe = args.nprobe
    index.add(x)
    return index


def make_search_fn(index: faiss.Index):
    """The shard function both paths call: FAISS search shaped as a SearchResult."""

    def search(queries: np.ndarray, k: int, filters: SearchFilter) -> SearchResult:
        scores, ids = index.search(queries, k)
        found = ids >= 0
        return SearchResult(
            product_ids=ids.astype(np.int64),
            image_ids=ids.astype(np.int64),
            scores=np.where(found, scores, -np.inf).astype(np.float32),
        )

    return search


# ------------------------------------------------------------------ server process


def serve(args: argparse.Namespace) -> None:
    faiss.omp_set_num_threads(args.faiss_threads)
    index = faiss.read_index(args.index_path)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = RpcServer(
        connect(args.redis_url),
        shard_queue_key(0),
        make_search_handler(make_search_fn(index), shard=0),
        batch_cap=args.batch_cap,
    )
    server.serve_forever(stop)
    print(
        f"served={server.served} batches={server.batches} max_batch={server.max_batch_size}",
        file=sys.stderr,
    )


class ServerProcess:
    def __init__(self, args: argparse.Namespace, url: str, index_path: str, cap: int) -> None:
        cmd = [
            sys.executable,
            __file__,
            "--serve",
            "--redis-url",
            url,
            "--index-path",
            index_path,
            "--batch-cap",
            str(cap),
            "--faiss-threads",
            str(args.faiss_threads),
        ]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, client: SearchClient, dim: int) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                client.search(np.ones(dim, np.float32), 1, timeout_s=1.0)
                return
            except NoShardAvailable:
                if self.proc.poll() is not None:
                    raise RuntimeError("server process died") from None
        raise RuntimeError("server never answered")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        return err.strip().splitlines()[-1] if err.strip() else ""


# ------------------------------------------------------------------ measurements


def pct(ms: np.ndarray, q: float) -> float:
    return float(np.percentile(ms, q))


def latency_in_process(search, queries: np.ndarray, k: int) -> np.ndarray:
    out = np.empty(len(queries))
    filters = SearchFilter()
    for i in range(len(queries)):
        t0 = time.perf_counter()
        search(queries[i : i + 1], k, filters)
        out[i] = time.perf_counter() - t0
    return out * 1e3


def latency_rpc(client: SearchClient, queries: np.ndarray, k: int) -> np.ndarray:
    out = np.empty(len(queries))
    for i in range(len(queries)):
        t0 = time.perf_counter()
        got = client.search(queries[i], k, timeout_s=2.0)
        out[i] = time.perf_counter() - t0
        if got.partial:
            raise RuntimeError("a request missed its deadline")
    return out * 1e3


def load(client: SearchClient, queries: np.ndarray, k: int, threads: int, seconds: float) -> dict:
    """`threads` closed-loop callers for `seconds`: QPS and latency percentiles."""
    stop_at = time.perf_counter() + seconds
    per_thread: list[list[float]] = [[] for _ in range(threads)]
    failures = [0] * threads

    def run(t: int) -> None:
        i = t * 997
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                client.search(queries[i % len(queries)], k, timeout_s=2.0)
            except NoShardAvailable:
                failures[t] += 1
            per_thread[t].append(time.perf_counter() - t0)
            i += 1

    started = time.perf_counter()
    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - started
    ms = np.array([x for lat in per_thread for x in lat]) * 1e3
    return {
        "qps": len(ms) / elapsed,
        "p50": pct(ms, 50),
        "p99": pct(ms, 99),
        "failed": sum(failures),
    }


def plot(inproc: np.ndarray, rpc: np.ndarray, qps: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name, ms in (("in-process", inproc), ("through RPC", rpc)):
        xs = np.sort(ms)
        a.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=name)
    a.set(
        xscale="log",
        xlabel="latency (ms)",
        ylabel="fraction of queries",
        title="single-query search latency",
    )
    a.legend()
    concs = sorted({c for _, c in qps})
    caps = sorted({cap for cap, _ in qps})
    width = 0.8 / len(caps)
    for j, cap in enumerate(caps):
        b.bar(
            [i + j * width for i in range(len(concs))],
            [qps[cap, c]["qps"] for c in concs],
            width,
            label=f"batch cap {cap}",
        )
    b.set_xticks(
        [i + width * (len(caps) - 1) / 2 for i in range(len(concs))], [str(c) for c in concs]
    )
    b.set(xlabel="concurrent callers", ylabel="queries / s", title="throughput through RPC")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k vectors, short runs")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--index", choices=["ivf", "flat"], default="ivf")
    parser.add_argument("--nlist", type=int, default=256)
    parser.add_argument("--nprobe", type=int, default=8)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--queries", type=int, default=2000, help="latency samples per path")
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput cell")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--batch-cap", type=int, default=64, help="the default cap compared to 1")
    parser.add_argument("--faiss-threads", type=int, default=1)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--index-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    if args.quick:
        args.n, args.nlist, args.queries, args.seconds = 20_000, 128, 500, 2.0

    faiss.omp_set_num_threads(args.faiss_threads)
    t0 = time.perf_counter()
    index = build_index(args)
    desc = f"{args.index} {args.n}x{args.dim}" + (
        f" nlist={args.nlist} nprobe={args.nprobe}" if args.index == "ivf" else ""
    )
    print(f"index: {desc}, k={args.k}, built in {time.perf_counter() - t0:.1f}s")
    queries = unit_vectors(max(args.queries, 4096), args.dim, seed=1)
    search = make_search_fn(index)
    concurrency = [int(c) for c in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory() as tmp, RedisProcess(Path(tmp) / "redis") as redis_proc:
        index_path = str(Path(tmp) / "index.faiss")
        faiss.write_index(index, index_path)
        client = SearchClient(connect(redis_proc.url), n_shards=1)

        # 1. latency: in-process vs RPC (default cap; sequential, so batches are of one)
        server = ServerProcess(args, redis_proc.url, index_path, args.batch_cap)
        server.wait_ready(client, args.dim)
        latency_in_process(search, queries[:100], args.k)
        latency_rpc(client, queries[:100], args.k)
        inproc = latency_in_process(search, queries[: args.queries], args.k)
        rpc = latency_rpc(client, queries[: args.queries], args.k)
        qps: dict[tuple[int, int], dict] = {}
        for c in concurrency:
            qps[args.batch_cap, c] = load(client, queries, args.k, c, args.seconds)
        server_stats = {args.batch_cap: server.stop()}

        # 2. throughput with batch cap 1
        server = ServerProcess(args, redis_proc.url, index_path, 1)
        server.wait_ready(client, args.dim)
        for c in concurrency:
            qps[1, c] = load(client, queries, args.k, c, args.seconds)
        server_stats[1] = server.stop()

    added50 = pct(rpc, 50) - pct(inproc, 50)
    added99 = pct(rpc, 99) - pct(inproc, 99)
    print(f"\nSingle-query latency ({args.queries} sequential queries), ms")
    print(f"{'path':<14}{'p50':>9}{'p99':>9}{'mean':>9}")
    for name, ms in (("in-process", inproc), ("through RPC", rpc)):
        print(f"{name:<14}{pct(ms, 50):9.3f}{pct(ms, 99):9.3f}{ms.mean():9.3f}")
    print(
        f"{'RPC adds':<14}{added50:9.3f}{added99:9.3f}{rpc.mean() - inproc.mean():9.3f}"
        f"   (ratio p50 {pct(rpc, 50) / pct(inproc, 50):.2f}x)"
    )
    print(
        f"\nThroughput through RPC ({args.seconds:.0f} s per cell; in-process sequential "
        f"= {1e3 / inproc.mean():.0f} q/s)"
    )
    print(f"{'callers':>8} {'cap':>4}{'q/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'failed':>7}")
    for c in concurrency:
        for cap in (1, args.batch_cap):
            r = qps[cap, c]
            print(f"{c:>8} {cap:>4}{r['qps']:9.0f}{r['p50']:9.2f}{r['p99']:9.2f}{r['failed']:>7}")
        gain = qps[args.batch_cap, c]["qps"] / qps[1, c]["qps"]
        print(f"{'':>8} {'':>4}  batching gain x{gain:.2f}")
    print(
        f"server counters: cap {args.batch_cap}: {server_stats[args.batch_cap]}; "
        f"cap 1: {server_stats[1]}"
    )
    OUT.mkdir(exist_ok=True)
    plot_path = OUT / f"rpc_bench_{args.index}{'_quick' if args.quick else ''}.png"
    plot(inproc, rpc, qps, plot_path)
    print(f"plot: {plot_path}")
    top = max(concurrency)
    print(
        f"rpc_bench {desc}: RPC adds {added50:.3f} ms at p50 ({added99:.3f} ms at p99) over "
        f"{pct(inproc, 50):.3f} ms in-process; {top} callers: "
        f"{qps[args.batch_cap, top]['qps']:.0f} q/s with batch cap {args.batch_cap} vs "
        f"{qps[1, top]['qps']:.0f} with cap 1 "
        f"(x{qps[args.batch_cap, top]['qps'] / qps[1, top]['qps']:.2f})"
    )


if __name__ == "__main__":
    main()
