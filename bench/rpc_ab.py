"""Two code trees' RPC paths side by side: what a search costs in each, under the same load.

On shared cores the wall times of runs made one after the other swing more than most
changes to the RPC path. Here the tree under test (this one) and a base tree (e.g. a
worktree of main) each start their own redis-server and shard processes (2 shards, HNSW,
search_bench's synthetic catalog, built once into --work) and are driven at the same
time, so both see the same neighbours. For each cell, one caller searching one query at a
time, then --callers closed-loop threads: CPU a search on every side (the caller process,
the shard processes, Redis), p50 latency and q/s, and the ratio test/base.

    git worktree add /tmp/base main
    python bench/rpc_ab.py --baseline /tmp/base --quick --work /tmp/rpb  # < 1 min once built
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _measuring_module(name: str) -> types.ModuleType:
    """bench/<name>.py of this tree, loaded by path: the measuring code stays the same
    whichever tree is measured (an older one may not have it)."""
    spec = importlib.util.spec_from_file_location(f"rpc_ab_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child(args: argparse.Namespace) -> None:
    """One tree's cells, run with that tree's code first on sys.path; prints JSON lines."""
    cpu_seconds = _measuring_module("process_costs").cpu_seconds  # this tree's, either way
    sys.path.insert(0, str(args.tree))
    from bench.search_data import DIM, MODEL, fresh_vectors
    from bench.search_procs import ShardProcs
    from workers.encoding.registry import publish_model
    from workers.index.threads import use_search_threads
    from workers.redis_process import RedisProcess
    from workers.rpc.client import SearchClient
    from workers.rpc.connection import connect

    use_search_threads(1)
    redis_dir = Path(tempfile.mkdtemp(prefix="redis-", dir=args.work))
    redis_proc = RedisProcess(redis_dir)
    redis_proc.start()
    shards = None
    try:
        client = connect(redis_proc.url)
        publish_model(client, MODEL, DIM, random_weights=True)
        logs = Path(tempfile.mkdtemp(prefix="logs-", dir=args.work))
        shards = ShardProcs(redis_proc.url, args.work / "index", 2, 64, logs)
        search = SearchClient(client, 2)
        shards.start().wait_ready(search, DIM)
        probe = fresh_vectors(300, seed=31)
        for q in probe:  # warm both sides
            search.search(q, args.k, timeout_s=2.0)
        pids, redis_pid = [p.pid for p in shards.procs], redis_proc.proc.pid
        print("ready", flush=True)
        sys.stdin.readline()  # the parent starts both trees' cells together

        def cell(name: str, callers: int) -> None:
            latencies: list[list[float]] = [[] for _ in range(callers)]
            stop = time.monotonic() + args.seconds

            def loop(j: int) -> None:
                i = j
                while time.monotonic() < stop:
                    t0 = time.perf_counter()
                    search.search(probe[i % len(probe)], args.k, timeout_s=2.0)
                    latencies[j].append(time.perf_counter() - t0)
                    i += 7

            c0, s0, r0 = time.process_time(), cpu_seconds(pids), cpu_seconds([redis_pid])
            threads = [threading.Thread(target=loop, args=(j,)) for j in range(callers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            caller = time.process_time() - c0
            served, redis_cpu = cpu_seconds(pids) - s0, cpu_seconds([redis_pid]) - r0
            done = np.concatenate([np.array(lat) for lat in latencies])
            print(json.dumps({
                "cell": name, "qps": len(done) / args.seconds,
                "p50_ms": 1e3 * float(np.median(done)),
                "caller_us": 1e6 * caller / len(done), "shards_us": 1e6 * served / len(done),
                "redis_us": 1e6 * redis_cpu / len(done),
            }), flush=True)  # fmt: skip

        cell("1 caller", 1)
        cell(f"{args.callers} callers", args.callers)
    finally:
        if shards is not None:
            shards.stop()
        redis_proc.stop()
        shutil.rmtree(redis_dir, ignore_errors=True)


def run_round(trees: dict[str, Path], args: argparse.Namespace) -> dict[str, list[dict]]:
    """Both trees' cells at the same time; their results by tree name."""
    procs = {}
    for name, tree in trees.items():
        cmd = [
            sys.executable, __file__, "--child", "--tree", str(tree), "--work", str(args.work),
            "--seconds", str(args.seconds), "--callers", str(args.callers), "--k", str(args.k),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        procs[name] = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
    for name, proc in procs.items():
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {name} tree's servers did not start")
    for proc in procs.values():
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=600)
        if proc.returncode:
            raise RuntimeError(f"the {name} tree's cells failed")
        results[name] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", type=Path, help="the other tree (a checkout of this repo)")
    parser.add_argument("--quick", action="store_true", help="50k vectors, 2 rounds of 4 s")
    parser.add_argument("--n", type=int, default=200_000, help="vectors in both shards")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="per cell")
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--work", type=Path, help="keep the shards here and reuse them")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.baseline is None:
        parser.error("--baseline is required")
    if args.quick:
        args.n, args.rounds, args.seconds = 50_000, 2, 4.0
    sys.path.insert(0, str(ROOT))
    from bench.catalog_build import prepare
    from bench.search_data import query_products

    started = time.perf_counter()
    scratch = None
    if args.work is None:
        scratch = tempfile.mkdtemp(prefix="rpc-ab-")
        args.work = Path(scratch)
    args.work.mkdir(parents=True, exist_ok=True)
    try:
        query_ids, query_vecs = query_products(args.n, 300)
        prep = argparse.Namespace(n=args.n, shards=2, spec="hnsw")
        prepare(prep, args.work, query_ids, query_vecs)
        trees = {"base": args.baseline.resolve(), "test": ROOT}
        rounds = [run_round(trees, args) for _ in range(args.rounds)]
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nrpc_ab: {args.n:,} x 512 in 2 shards, k={args.k}; test {ROOT} vs base "
          f"{trees['base']}; {args.rounds} rounds of {args.seconds:.0f} s cells, both trees "
          f"at once; medians over rounds")  # fmt: skip
    cols = ("qps", "p50_ms", "caller_us", "shards_us", "redis_us")
    print(f"{'cell':<12}{'tree':<6}" + "".join(f"{c:>11}" for c in cols) + f"{'CPU us/q':>10}")
    summary = []
    for i, cell in enumerate(r["cell"] for r in rounds[0]["test"]):
        med = {
            tree: {c: float(np.median([r[tree][i][c] for r in rounds])) for c in cols}
            for tree in trees
        }
        for tree in trees:
            m = med[tree]
            cpu = m["caller_us"] + m["shards_us"] + m["redis_us"]
            print(f"{cell:<12}{tree:<6}" + "".join(f"{m[c]:11.3f}" for c in cols) + f"{cpu:10.1f}")
        ratio = {c: med["test"][c] / med["base"][c] for c in cols}
        print(f"{cell:<12}{'t/b':<6}" + "".join(f"{ratio[c]:11.2f}" for c in cols))
        cpu_ratio = sum(med["test"][c] for c in cols[2:]) / sum(med["base"][c] for c in cols[2:])
        summary.append(f"{cell}: CPU x{cpu_ratio:.2f}, q/s x{ratio['qps']:.2f}")
    print(f"rpc_ab test/base: {'; '.join(summary)}; {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
