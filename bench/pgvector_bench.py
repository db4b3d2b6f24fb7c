"""This service vs pgvector at the same recall (issue 23): QPS single client and 8 clients.

Both sides search the same catalog (bench/vector_set.py: 384-d anisotropic clusters,
normalised float32; 50k vectors, 24k with --quick so each of 2 shards is past 10k) for
10 neighbours of held-out queries:

- pgvector: an HNSW index (m 16, ef_construction 64, inner product) in a throwaway
  PostgreSQL cluster (bench/pg_path.py; the machine's own server is not touched), prepared
  SQL over loopback TCP with psycopg, one connection per client; ef_search tuned on
  separate held-out queries by the service tuner's rule (workers/index/tune.py).
- the service: 2 shards built by build_bulk with the default `auto` spec and the knobs its
  tuner chose, one ShardService replica process per shard on a private redis-server,
  searched through the RPC client (bench/service_path.py).

Recall@10 of each is measured on the same evaluation queries against exact neighbours.
Load cells (closed loop, own process, `--reps` rounds, the order alternating each round)
are interleaved and their medians reported; ratios are service / pgvector from this run.
Needs pgvector installed (bench/pgvector_build.sh); without it, says so and measures the
service only.

    python bench/pgvector_bench.py --quick   # 24k vectors, under 2 minutes
    python bench/pgvector_bench.py           # 50k vectors, 1000 queries
    python bench/pgvector_bench.py --full    # 200k vectors
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

from bench import pg_path, vector_set  # noqa: E402
from bench.service_path import Service, build_shards, closed_loop  # noqa: E402
from workers.index.threads import use_search_threads  # noqa: E402

HERE = Path(__file__).resolve().parent


def cells(args: argparse.Namespace, service: Service, pg: tuple[str, int] | None, queries: Path):
    """{(path, clients): [result per round]}, rounds interleaved, order alternating."""
    out: dict[tuple[str, int], list[dict]] = {}
    plan = [(path, c) for c in args.clients for path in (["pgvector"] if pg else []) + ["service"]]
    for rep in range(args.reps):
        for path, clients in plan if rep % 2 == 0 else plan[::-1]:
            if path == "service":
                got = service.load(queries, clients, args.seconds, args.warmup)
            else:
                dsn, ef = pg
                cmd = [str(HERE / "pg_path.py"), "load", "--dsn", dsn, "--queries", str(queries),
                       "--ef", str(ef)]  # fmt: skip
                got = closed_loop(cmd, clients, args.seconds, args.warmup)
            out.setdefault((path, clients), []).append(got)
    return out


def median(results: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in results]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="24k vectors, short cells")
    parser.add_argument("--full", action="store_true", help="200k vectors")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--spec", default="auto", help="the shards' index spec")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries per set")
    parser.add_argument("--target", type=float, default=0.95, help="recall@10 to tune to")
    parser.add_argument("--pg-m", type=int, default=16)
    parser.add_argument("--pg-ef-construction", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0, help="per load cell")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--clients", default="1,8")
    args = parser.parse_args()
    if args.quick:
        args.n, args.queries, args.seconds, args.warmup = 24_000, 300, 1.5, 0.5
    elif args.full:
        args.n = 200_000
    args.clients = [int(c) for c in args.clients.split(",")]
    use_search_threads(1)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="pgvector-bench-"))
    data = vector_set.make(args.n, args.queries)
    queries = data.save_queries(work / "queries.npy")
    took = time.perf_counter() - started
    print(f"catalog: {args.n} x {vector_set.DIM} clustered, 2 x {args.queries} held-out queries")
    print(f"  exact neighbours in {took:.0f}s", flush=True)

    missing = pg_path.pgvector_installed()
    pg = None
    if missing:
        print(f"pgvector skipped: {missing}")
    else:
        pg = pg_path.ThrowawayPostgres().start()
        steps = pg_path.load(pg.dsn, data, args.pg_m, args.pg_ef_construction)
        ef, tried = pg_path.tune_ef(pg.dsn, data, args.target)
        pg_recall = vector_set.recall(pg_path.search_all(pg.dsn, data.queries, ef), data.truth)
        sweep = ", ".join(f"{t['ef_search']}: {t['recall']:.3f}" for t in tried)
        print(f"pgvector: HNSW m{args.pg_m} efc{args.pg_ef_construction}, ", end="")
        print(f"copy {steps['copy_s']:.1f}s, index {steps['index_s']:.1f}s")
        print(f"  ef_search {ef} (tried {sweep})", flush=True)
    logs = work / "logs"
    logs.mkdir()
    builds = build_shards(data, args.shards, work / "index", args.spec)
    for facts in builds:
        print(f"service shard {facts}", flush=True)
    service = Service(work / "index", args.shards, logs)
    try:
        service.start()
        service_recall = service.recall(data)
        results = cells(args, service, (pg.dsn, ef) if pg else None, queries)
    finally:
        service.stop()
        if pg is not None:
            pg.stop()
    shutil.rmtree(work, ignore_errors=True)

    knobs = "; ".join(sorted({f"{b['spec']} {b['knobs']}" for b in builds}))
    names = {
        "service": f"service RPC, {args.shards} shards ({knobs})",
        "pgvector": f"pgvector HNSW m{args.pg_m}, ef_search {ef if pg else '-'}, SQL loopback",
    }
    recalls = {"service": service_recall, "pgvector": pg_recall if pg else float("nan")}
    print(f"\nrecall@10 target {args.target}, medians of {args.reps} interleaved rounds of "
          f"{args.seconds:.0f}s cells, {args.n} vectors")  # fmt: skip
    header = (
        f"| path | recall@10 | {' | '.join(f'{c} client QPS (p50 ms)' for c in args.clients)} |"
    )
    print(header)
    print("|" + " --- |" * (2 + len(args.clients)))
    for path in ("pgvector", "service") if pg else ("service",):
        row = [f"{median(results[(path, c)], 'qps'):,.0f} ({median(results[(path, c)], 'p50'):.2f})"
               for c in args.clients]  # fmt: skip
        print(f"| {names[path]} | {recalls[path]:.3f} | {' | '.join(row)} |")
    errors = sum(r["errors"] for runs in results.values() for r in runs)
    if errors:
        print(f"errors or partial answers: {errors}")
    if not pg:
        print("summary: pgvector not installed; service only (run bench/pgvector_build.sh)")
        return
    ratios = {
        c: median(results[("service", c)], "qps") / median(results[("pgvector", c)], "qps")
        for c in args.clients
    }
    for c, ratio in ratios.items():
        print(f"service / pgvector QPS, {c} client{'s' * (c > 1)}: {ratio:.2f}x")
    print(f"summary: service {' / '.join(f'{r:.2f}x' for r in ratios.values())} pgvector's QPS "
          f"at {'/'.join(map(str, args.clients))} clients, recall@10 {service_recall:.3f} vs "
          f"{pg_recall:.3f} ({time.perf_counter() - started:.0f}s)")  # fmt: skip


if __name__ == "__main__":
    main()
