"""This service vs pgvector at the same recall (issue 23): QPS single client and 8 clients.

Both sides search the same catalog (bench/vector_set.py: 384-d anisotropic clusters,
normalised float32; 50k vectors, 24k with --quick, so that each of 2 shards would still
be past 10k) for 10 neighbours of held-out queries:

- pgvector: an HNSW index (m 16, ef_construction 64, inner product) in a throwaway
  PostgreSQL cluster (bench/pg_path.py; the machine's own server is not touched), prepared
  SQL over loopback TCP with psycopg, one connection per client; ef_search tuned on
  separate held-out queries by the service tuner's rule (workers/index/tune/).
- the service: `--shards` shards (the service's default, one; `--shards 2` fans out)
  built by build_bulk with the default `auto` spec and the knobs its tuner chose for that
  many shards, one ShardService replica process per shard on a private redis-server,
  searched through the RPC client (bench/service_path.py).
- REST (not with --quick, or skip with --no-rest): the service's `GET
  /api/products/{id}/similar/?k=10` vs a plain Django view over pgvector answering the
  same (bench/rest_path.py, bench/pgvector_site.py), gunicorn 2 workers x 8 threads each;
  every path is asked once before the first cell, so that no cell pays for cold caches.

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
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import pg_path, rest_path, vector_set  # noqa: E402
from bench.service_path import Service, build_shards, closed_loop  # noqa: E402
from workers.index.threads import use_search_threads  # noqa: E402

HERE = Path(__file__).resolve().parent
Runner = Callable[[int], dict]  # clients -> one closed-loop result


def cells(args: argparse.Namespace, runners: dict[str, Runner]) -> dict[tuple[str, int], list]:
    """{(path, clients): [result per round]}, rounds interleaved, order alternating."""
    out: dict[tuple[str, int], list[dict]] = {}
    plan = [(path, c) for c in args.clients for path in runners]
    for rep in range(args.reps):
        for path, clients in plan if rep % 2 == 0 else plan[::-1]:
            out.setdefault((path, clients), []).append(runners[path](clients))
    return out


def median(results: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in results]))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="24k vectors, short cells, no REST")
    parser.add_argument("--full", action="store_true", help="200k vectors")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--shards", type=int, default=1, help="as SEARCH_SHARDS (default 1)")
    parser.add_argument("--spec", default="auto", help="the shards' index spec")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries per set")
    parser.add_argument("--target", type=float, default=0.95, help="recall@10 to tune to")
    parser.add_argument("--pg-m", type=int, default=16)
    parser.add_argument("--pg-ef-construction", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0, help="per load cell")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--no-rest", action="store_true", help="skip the REST comparison")
    args = parser.parse_args()
    if args.quick:
        args.n, args.queries, args.seconds, args.warmup = 24_000, 300, 1.5, 0.5
        args.no_rest = True
    elif args.full:
        args.n = 200_000
    args.clients = [int(c) for c in args.clients.split(",")]
    return args


def main() -> None:
    args = parse()
    use_search_threads(1)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="pgvector-bench-"))
    data = vector_set.make(args.n, args.queries)
    queries = data.save_queries(work / "queries.npy")
    took = time.perf_counter() - started
    print(f"catalog: {args.n} x {vector_set.DIM} clustered, 2 x {args.queries} held-out queries")
    print(f"  exact neighbours in {took:.0f}s", flush=True)

    missing = pg_path.pgvector_installed()
    pg, ef, recalls, names = None, 0, {}, {}
    if missing:
        print(f"pgvector skipped: {missing}")
    else:
        pg = pg_path.ThrowawayPostgres().start()
        steps = pg_path.load(pg.dsn, data, args.pg_m, args.pg_ef_construction)
        ef, tried = pg_path.tune_ef(pg.dsn, data, args.target)
        found = pg_path.search_all(pg.dsn, data.queries, ef)
        recalls["pgvector"] = vector_set.recall(found, data.truth)
        recalls["pgvector-django"] = recalls["pgvector-stack"] = recalls["pgvector"]
        sweep = ", ".join(f"{t['ef_search']}: {t['recall']:.3f}" for t in tried)
        print(f"pgvector: HNSW m{args.pg_m} efc{args.pg_ef_construction}, ", end="")
        print(f"copy {steps['copy_s']:.1f}s, index {steps['index_s']:.1f}s")
        print(f"  ef_search {ef} (tried {sweep})", flush=True)
    logs = work / "logs"
    logs.mkdir()
    builds = build_shards(data, args.shards, work / "index", args.spec)
    for facts in builds:
        print(f"service shard {facts}", flush=True)
    products = np.sort(np.random.default_rng(5).choice(data.ids, args.queries, replace=False))
    data_dir = None if args.no_rest else rest_path.catalog_db(work, data, products, args.shards)
    service = Service(work / "index", args.shards, logs)
    webs = []
    try:
        service.start()
        recalls["service"] = recalls["service-rest"] = service.recall(data)
        runners: dict[str, Runner] = {}
        if pg is not None:
            cmd = [str(HERE / "pg_path.py"), "load", "--dsn", pg.dsn, "--queries", str(queries),
                   "--ef", str(ef)]  # fmt: skip
            runners["pgvector"] = lambda c: closed_loop(cmd, c, args.seconds, args.warmup)
        runners["service"] = lambda c: service.load(queries, c, args.seconds, args.warmup)
        if data_dir is not None:

            def rest_runner(web: rest_path.WebProcess, template: str, name: str) -> Runner:
                webs.append(web)  # stopped in `finally`, ready or not
                paths = rest_path.paths_file(work / f"{name}.txt", template, products)
                web.wait_ready(template.format(pid=int(products[0])))
                rest_path.warm(web.url, paths)
                return lambda c: rest_path.http_load(web.url, paths, c, args.seconds, args.warmup)

            if pg is not None:
                runners["pgvector-django"] = rest_runner(
                    rest_path.pgvector_web(pg.port, ef, logs),
                    "/products/{pid}/similar/?k=10",
                    "plain",
                )
                runners["pgvector-stack"] = rest_runner(
                    rest_path.pgvector_stack_web(
                        data_dir, service.redis.url, args.shards, pg.port, ef, logs
                    ),
                    "/api/pgvector/products/{pid}/similar/?k=10",
                    "stacked",
                )
            runners["service-rest"] = rest_runner(
                rest_path.service_web(data_dir, service.redis.url, args.shards, logs),
                "/api/products/{pid}/similar/?k=10",
                "rest",
            )
        results = cells(args, runners)
    finally:
        for web in webs:
            web.stop()
        service.stop()
        if pg is not None:
            pg.stop()
    shutil.rmtree(work, ignore_errors=True)

    knobs = "; ".join(sorted({f"{b['spec']} {b['knobs']}" for b in builds}))
    names = {
        "pgvector": f"pgvector HNSW m{args.pg_m}, ef_search {ef}, SQL loopback",
        "service": f"service RPC, {args.shards} shards ({knobs})",
        "pgvector-django": "Django view over pgvector, gunicorn",
        "pgvector-stack": "the same in this project's stack, gunicorn",
        "service-rest": "service REST `similar`, gunicorn",
    }
    report(args, results, names, recalls, runners)
    pairs = [
        ("service", "pgvector"),
        ("service-rest", "pgvector-django"),
        ("service-rest", "pgvector-stack"),
    ]
    ratios = {}
    for ours, theirs in pairs:
        if ours in runners and theirs in runners:
            for c in args.clients:
                ratio = median(results[(ours, c)], "qps") / median(results[(theirs, c)], "qps")
                ratios[(ours, theirs, c)] = ratio
                print(f"{ours} / {theirs} QPS, {c} client(s): {ratio:.2f}x")
    took = time.perf_counter() - started
    if pg is None:
        print(
            f"summary: pgvector not installed, service only (bench/pgvector_build.sh) ({took:.0f}s)"
        )
        return

    def of(ours: str, theirs: str) -> str:
        return " / ".join(f"{ratios[(ours, theirs, c)]:.2f}x" for c in args.clients)

    rpc = of("service", "pgvector")
    line = f"summary: RPC {rpc} pgvector's QPS at {'/'.join(map(str, args.clients))} clients"
    if ("service-rest", "pgvector-django", args.clients[0]) in ratios:
        line += f", REST {of('service-rest', 'pgvector-django')} the plain Django view's"
        line += f" and {of('service-rest', 'pgvector-stack')} the same in this stack"
    print(f"{line}; recall@10 {recalls['service']:.3f} vs {recalls['pgvector']:.3f} ({took:.0f}s)")


def report(args, results, names, recalls, runners) -> None:
    print(f"\nrecall@10 target {args.target}, {args.n} vectors, medians of {args.reps} "
          f"interleaved rounds of {args.seconds:g}s cells")  # fmt: skip
    columns = " | ".join(f"{c} client(s) QPS (p50 ms)" for c in args.clients)
    print(f"| path | recall@10 | {columns} |")
    print("|" + " --- |" * (2 + len(args.clients)))
    for path in runners:
        row = " | ".join(
            f"{median(results[(path, c)], 'qps'):,.0f} ({median(results[(path, c)], 'p50'):.2f})"
            for c in args.clients
        )
        print(f"| {names[path]} | {recalls[path]:.3f} | {row} |")
    errors = sum(r["errors"] for runs in results.values() for r in runs)
    if errors:
        print(f"errors or partial answers: {errors}")


if __name__ == "__main__":
    main()
