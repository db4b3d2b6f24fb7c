"""How many shards a catalog should use (issue 23, item 4): QPS through the RPC path with
1, 2 and 4 shards of the same catalog, at the same recall target.

Each shard count gets its own build (bench/vector_set.py catalog, the default `auto` spec
and tuned knobs, so small shards fall back to exact scans as a deployment's would), its own
private redis-server and one replica process per shard (bench/service_path.py); all run at
once and the load cells (closed loop, 1 and 8 clients) are interleaved over `--reps` rounds,
the order alternating; medians are reported, ratios against 1 shard from the same run.

    python bench/shards_bench.py --quick   # 16k vectors, under 2 minutes
    python bench/shards_bench.py           # 50k vectors
    python bench/shards_bench.py --full    # 500k vectors (builds take minutes)
    python bench/shards_bench.py --shard-counts 1 --specs hnsw,ivf   # index kinds compared
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import vector_set  # noqa: E402
from bench.service_path import Service, build_shards  # noqa: E402
from workers.index.threads import use_search_threads  # noqa: E402

Config = tuple[int, str]  # (shards, spec)


def label(config: Config) -> str:
    count, spec = config
    return f"{count} shard{'s' * (count > 1)} ({spec})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="16k vectors, short cells")
    parser.add_argument("--full", action="store_true", help="500k vectors")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--shard-counts", default="1,2,4")
    parser.add_argument("--specs", default="auto", help="index specs to compare, e.g. hnsw,ivf")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries")
    parser.add_argument("--seconds", type=float, default=6.0, help="per load cell")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--clients", default="1,8")
    args = parser.parse_args()
    if args.quick:
        args.n, args.queries, args.seconds, args.warmup = 16_000, 300, 1.5, 0.5
    elif args.full:
        args.n = 500_000
    configs = [
        (int(count), spec)
        for spec in args.specs.split(",")
        for count in args.shard_counts.split(",")
    ]
    clients = [int(c) for c in args.clients.split(",")]
    use_search_threads(1)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="shards-bench-"))
    data = vector_set.make(args.n, args.queries)
    queries = data.save_queries(work / "queries.npy")
    print(f"catalog: {args.n} x {vector_set.DIM} clustered, {args.queries} held-out queries")
    services: dict[Config, Service] = {}
    specs: dict[Config, str] = {}
    recalls: dict[Config, float] = {}
    results: dict[tuple[Config, int], list[dict]] = {}
    try:
        for config in configs:
            count, spec = config
            index_dir = work / f"index-{count}-{spec}"
            builds = build_shards(data, count, index_dir, spec)
            specs[config] = "; ".join(sorted({f"{b['spec']} {b['knobs']}" for b in builds}))
            built_s = sum(b["build_s"] for b in builds)
            print(f"{count} shard(s): {specs[config]}, built in {built_s:.0f}s", flush=True)
            logs = work / f"logs-{count}-{spec}"
            logs.mkdir()
            services[config] = Service(index_dir, count, logs).start()
            recalls[config] = services[config].recall(data)
        plan = [(config, c) for c in clients for config in configs]
        for rep in range(args.reps):
            for config, c in plan if rep % 2 == 0 else plan[::-1]:
                got = services[config].load(queries, c, args.seconds, args.warmup)
                results.setdefault((config, c), []).append(got)
    finally:
        for service in services.values():
            service.stop()
        shutil.rmtree(work, ignore_errors=True)

    def med(config: Config, c: int, key: str) -> float:
        return float(np.median([r[key] for r in results[(config, c)]]))

    print(f"\n{args.n} vectors, medians of {args.reps} interleaved rounds of {args.seconds:.0f}s")
    columns = " | ".join(f"{c} client QPS (p50 ms)" for c in clients)
    print(f"| shards | index per shard | recall@10 | {columns} |")
    print("|" + " --- |" * (3 + len(clients)))
    for config in configs:
        cells = " | ".join(
            f"{med(config, c, 'qps'):,.0f} ({med(config, c, 'p50'):.2f})" for c in clients
        )
        print(f"| {config[0]} | {specs[config]} | {recalls[config]:.3f} | {cells} |")
    errors = sum(r["errors"] for runs in results.values() for r in runs)
    if errors:
        print(f"errors or partial answers: {errors}")
    base = configs[0]
    for config in configs[1:]:
        ratios = ", ".join(
            f"{med(config, c, 'qps') / med(base, c, 'qps'):.2f}x at {c}" for c in clients
        )
        print(f"{label(config)} / {label(base)} QPS: {ratios} client(s)")
    best = {c: max(configs, key=lambda config, c=c: med(config, c, "qps")) for c in clients}
    picks = ", ".join(f"{label(best[c])} at {c} client(s)" for c in clients)
    took = time.perf_counter() - started
    print(f"summary: {args.n} vectors are served fastest by {picks} ({took:.0f}s)")


if __name__ == "__main__":
    main()
