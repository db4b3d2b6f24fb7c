"""Search service end to end (issue 5): RPC overhead, API latency/QPS, batching, freshness.

2 shards of synthetic clustered 512-d vectors (1M in all; IVF, built with build_bulk and
snapshotted where the replicas load from), one ShardService process per shard (one FAISS
thread each), a private redis-server, gunicorn serving the Django API over a throwaway
SQLite catalog whose rows match the vectors, and a load generator in its own process
(bench/closed_loop.py), all on loopback:

1. RPC overhead: one shard searched through the RPC vs the same snapshot searched in-process.
2. API end to end: `similar` (stored embedding) and text search with a warm query-embedding
   cache (the query vectors are put in the cache up front: no encoder runs), p50/p99/QPS at
   concurrency 1, 8, 32. Each cell cycles through the same distinct queries, so after a
   query's first pass its products' cards and vector come from the Redis product cache
   (catalog.product_cache), as a popular product's would.
3. Batching: QPS at concurrency 32 with batch cap 1 vs the default cap (API and plain RPC).
4. Freshness: from `UpdateLog.append_upserts` of a new vector to the end of the first search
   that returns it.

    python bench/search_bench.py --quick          # 50k vectors, < 2 minutes
    python bench/search_bench.py                  # 1M vectors (builds take ~10 minutes)
    python bench/search_bench.py --work /tmp/sb   # keep (and reuse) the built shards and DB
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.catalog_build import prepare  # noqa: E402
from bench.rpc_bench import latency_in_process, latency_rpc, pct  # noqa: E402
from bench.search_data import (  # noqa: E402
    DIM,
    MODEL,
    attrs_for,
    fresh_vectors,
    query_products,
)
from bench.search_procs import ShardProcs, WebProcess, web_env  # noqa: E402
from workers.encoding.registry import publish_model  # noqa: E402
from workers.index.log import UpdateLog, shard_for_product  # noqa: E402
from workers.index.shard import Shard  # noqa: E402
from workers.index.threads import use_search_threads  # noqa: E402
from workers.redis_process import RedisProcess  # noqa: E402
from workers.rpc.cache import QueryEmbeddingCache  # noqa: E402
from workers.rpc.client import SearchClient  # noqa: E402
from workers.rpc.connection import connect  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
HERE = Path(__file__).resolve().parent


def closed_loop(target: str, concurrency: int, args: argparse.Namespace, **opts: str) -> dict:
    cmd = [
        sys.executable, str(HERE / "closed_loop.py"), target,
        "-c", str(concurrency), "-s", str(args.seconds), "--warmup", str(args.warmup),
        "--k", str(args.k),
    ]  # fmt: skip
    for key, value in opts.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    ms = np.asarray(result["ms"], dtype=np.float64)
    result["ms"] = ms
    result["p50"] = pct(ms, 50) if len(ms) else float("nan")
    result["p99"] = pct(ms, 99) if len(ms) else float("nan")
    took = np.asarray(result["took_ms"], dtype=np.float64)
    took = took[np.isfinite(took)]
    result["took50"] = pct(took, 50) if len(took) else float("nan")
    errors = sum(v for k, v in result["status"].items() if k != "200")
    result["errors"] = errors
    return result


# ------------------------------------------------------------------ freshness


def freshness(redis_url: str, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """(ms from append to the end of the first search returning it, searches needed)."""
    client = connect(redis_url)
    search = SearchClient(client, args.shards)
    logs = [UpdateLog(client, s, MODEL, DIM) for s in range(args.shards)]
    vectors = fresh_vectors(args.trials, seed=777)
    rng = np.random.default_rng(3)
    out = np.empty(args.trials)
    polls = np.empty(args.trials, dtype=np.int64)
    for t in range(args.trials):
        pid = np.array([args.n + 1_000_000 + t], dtype=np.int64)
        log = logs[shard_for_product(int(pid[0]), args.shards)]
        started = time.perf_counter()
        log.append_upserts(pid, vectors[t : t + 1], attrs_for(pid))
        n = 0
        while True:
            n += 1
            got = search.search(vectors[t], 10, timeout_s=1.0)
            if pid[0] in got.result.image_ids[0]:
                break
            if time.perf_counter() - started > 10:
                raise RuntimeError(f"upsert {pid[0]} not searchable after 10 s")
        out[t] = (time.perf_counter() - started) * 1e3
        polls[t] = n
        time.sleep(float(rng.uniform(0.01, 0.05)))  # do not phase-lock with the log reader
    return out, polls


# ------------------------------------------------------------------ report


def plot(part1: dict, api: dict, fresh: np.ndarray, qps32: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    a, b, c, d = axes.ravel()
    for name, ms in part1.items():
        xs = np.sort(ms)
        a.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=name)
    a.set(xscale="log", xlabel="ms", ylabel="fraction", title="1. one shard: in-process vs RPC")
    a.legend()
    for (endpoint, conc), r in api.items():
        xs = np.sort(r["ms"])
        style = "-" if endpoint == "similar" else "--"
        b.plot(xs, np.arange(1, len(xs) + 1) / len(xs), style, label=f"{endpoint} c={conc}")
    b.axvline(50, color="grey", lw=0.8, ls=":")
    b.set(xscale="log", xlabel="ms", ylabel="fraction", title="2. API end to end (CDF)")
    b.legend(fontsize=8)
    names = list(qps32)
    d.bar(range(len(names)), [qps32[n] for n in names])
    d.set_xticks(range(len(names)), names, fontsize=8)
    d.set(ylabel="queries / s", title="3. concurrency 32: batch cap 1 vs default")
    xs = np.sort(fresh)
    c.plot(xs, np.arange(1, len(xs) + 1) / len(xs))
    c.axvline(200, color="grey", lw=0.8, ls=":")
    c.set(xlabel="ms", ylabel="fraction", title="4. freshness: append -> first search hit")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="50k vectors, short cells")
    parser.add_argument("--n", type=int, default=1_000_000, help="vectors in all shards")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--spec", help="index spec of each shard (default ivf; quick IVF128,Flat)")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--queries", type=int, default=1000, help="distinct API queries")
    parser.add_argument("--latency-queries", type=int, default=2000, help="part 1 samples")
    parser.add_argument("--seconds", type=float, default=15.0, help="per load cell")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--batch-cap", type=int, default=64, help="the default cap")
    parser.add_argument("--trials", type=int, default=300, help="freshness trials")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=8)
    parser.add_argument("--work", type=Path, help="keep shards+DB here and reuse them")
    args = parser.parse_args()
    if args.quick:
        args.n, args.queries, args.latency_queries = 50_000, 300, 300
        args.seconds, args.warmup, args.trials = 3.0, 0.5, 40
    args.spec = args.spec or ("IVF128,Flat" if args.quick else "ivf")
    concurrency = [int(c) for c in args.concurrency.split(",")]
    top = max(concurrency)
    load_before = os.getloadavg()
    use_search_threads(1)
    OUT.mkdir(exist_ok=True)
    scratch = None
    if args.work is None:
        scratch = tempfile.mkdtemp(prefix="search-bench-")
        work = Path(scratch)
    else:
        work = args.work
        work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    query_ids, query_vecs = query_products(args.n, args.queries)
    builds = prepare(args, work, query_ids, query_vecs)
    for facts in builds:
        print(f"shard {facts['shard']}: {facts}")

    redis_dir = Path(tempfile.mkdtemp(prefix="redis-", dir=work))
    redis_proc = RedisProcess(redis_dir)
    redis_proc.start()
    shards: ShardProcs | None = None
    web: WebProcess | None = None
    try:
        client = connect(redis_proc.url)
        publish_model(client, MODEL, DIM, random_weights=True)  # synthetic vectors: no meaning
        texts = [f"synthetic query {i}" for i in range(args.queries)]
        cache = QueryEmbeddingCache(client, MODEL)
        for text, vec in zip(texts, fresh_vectors(args.queries, seed=999), strict=True):
            cache.put("text", text, vec)  # warm cache: the web never needs an encoder
        logs = work / "logs"
        logs.mkdir(exist_ok=True)
        shards = ShardProcs(redis_proc.url, work / "index", args.shards, args.batch_cap, logs)
        both = SearchClient(client, args.shards)
        load_s = shards.start().wait_ready(both, DIM)
        print(f"shard replicas loaded and serving in {load_s:.1f}s", flush=True)
        env = web_env(work / "data", redis_proc.url, args.shards)
        web = WebProcess(env, logs, args.web_workers, args.web_threads).start()
        similar = [f"/api/products/{pid}/similar/?k={args.k}" for pid in query_ids]
        text_paths = [f"/api/search/?q={quote(t)}&k={args.k}" for t in texts]
        web.wait_ready(similar[0])
        (work / "similar.txt").write_text("\n".join(similar))
        (work / "text.txt").write_text("\n".join(text_paths))
        rpc_queries = work / "rpc-queries.npy"
        np.save(rpc_queries, fresh_vectors(args.queries, seed=4242))

        # 1. RPC overhead on shard 0 (a bare PING round trip says how slow loopback is now)
        ping = np.empty(1000)
        for i in range(len(ping)):
            t0 = time.perf_counter()
            client.ping()
            ping[i] = (time.perf_counter() - t0) * 1e3
        local, _ = Shard.load(
            work / "index" / "builds" / "shard-0" / "out", work_dir=work / "inproc-work"
        )
        one = SearchClient(client, 1)
        probe = fresh_vectors(args.latency_queries, seed=31)
        latency_in_process(local.search, probe[:100], args.k)
        latency_rpc(one, probe[:100], args.k)
        inproc = latency_in_process(local.search, probe, args.k)
        rpc = latency_rpc(one, probe, args.k)
        del local
        gc.collect()
        print("part 1 done", flush=True)

        # 2. API end to end
        api: dict[tuple[str, int], dict] = {}
        for name, paths in (("similar", work / "similar.txt"), ("text", work / "text.txt")):
            for conc in concurrency:
                cpu_before = web.cpu_seconds()
                api[name, conc] = closed_loop("http", conc, args, base=web.url, paths=paths)
                r = api[name, conc]
                served = r["qps"] * (args.seconds + args.warmup)  # warm-up requests use CPU too
                r["web_cpu_ms"] = 1e3 * (web.cpu_seconds() - cpu_before) / max(1.0, served)
                print(f"  {name} c={conc}: {r['qps']:.0f} q/s p50 {r['p50']:.1f} "
                      f"p99 {r['p99']:.1f} ms", flush=True)  # fmt: skip
        rpc_default = closed_loop(
            "rpc", top, args, redis_url=redis_proc.url, shards=args.shards, queries=rpc_queries
        )

        # 4. freshness (default cap)
        fresh, polls = freshness(redis_proc.url, args)
        counters_default = shards.stop()
        print("parts 2 and 4 done", flush=True)

        # 3. batch cap 1
        shards = ShardProcs(redis_proc.url, work / "index", args.shards, 1, logs)
        shards.start().wait_ready(both, DIM)
        cap1_api = closed_loop("http", top, args, base=web.url, paths=work / "similar.txt")
        cap1_rpc = closed_loop(
            "rpc", top, args, redis_url=redis_proc.url, shards=args.shards, queries=rpc_queries
        )
        counters_cap1 = shards.stop()
        shards = None
    finally:
        if web is not None:
            web.stop()
        if shards is not None:
            shards.stop()
        redis_proc.stop()
        shutil.rmtree(redis_dir, ignore_errors=True)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    # ---------------------------------------------------------------- table
    base50, base99 = pct(inproc, 50), pct(inproc, 99)
    base_qps = 1e3 / inproc.mean()
    spec = builds[0]["spec"]
    print(
        f"\nsearch_bench: {args.n:,} x {DIM} in {args.shards} shards ({spec}, "
        f"{builds[0]['params']}), k={args.k}; load avg {load_before[0]:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at end (2 cores, shared: figures are noisy)"
    )
    print(f"baseline: shard 0 searched in-process, one query at a time: p50 {base50:.3f} ms, "
          f"p99 {base99:.3f} ms, {base_qps:.0f} q/s")  # fmt: skip
    head = (
        f"{'what':<40}{'p50 ms':>9}{'p99 ms':>9}{'q/s':>8}{'x p50':>8}{'x q/s':>7}{'err':>6}"
        f"{'took50':>8}{'webCPU':>8}"
    )
    print(head)
    print("-" * len(head))

    def row(
        name: str,
        p50: float,
        p99: float,
        qps: float,
        err: object = "",
        took: float | None = None,
        cpu: float | None = None,
    ) -> None:
        print(f"{name:<40}{p50:9.3f}{p99:9.3f}{qps:8.0f}{p50 / base50:8.1f}"
              f"{qps / base_qps:7.2f}{err!s:>6}"
              + (f"{took:8.2f}" if took is not None else "")
              + (f"{cpu:8.2f}" if cpu is not None else ""))  # fmt: skip

    row("1. shard 0 in-process", base50, base99, base_qps)
    row("1. shard 0 through RPC", pct(rpc, 50), pct(rpc, 99), 1e3 / rpc.mean())
    row("   (reference: Redis PING round trip)", pct(ping, 50), pct(ping, 99), 1e3 / ping.mean())
    for (name, conc), r in api.items():
        err = r["errors"] + r["partial"]
        row(f"2. API {name} c={conc}", r["p50"], r["p99"], r["qps"], err, r["took50"],
            r["web_cpu_ms"])  # fmt: skip
    for label, r in (
        (f"3. API similar c={top} cap {args.batch_cap}", api["similar", top]),
        (f"3. API similar c={top} cap 1", cap1_api),
        (f"3. RPC 2 shards c={top} cap {args.batch_cap}", rpc_default),
        (f"3. RPC 2 shards c={top} cap 1", cap1_rpc),
    ):
        row(label, r["p50"], r["p99"], r["qps"], r["errors"] + r["partial"], r["took50"])
    print(f"{'4. freshness append -> search hit':<40}{pct(fresh, 50):9.3f}{pct(fresh, 99):9.3f}"
          f"   ({args.trials} trials, max {fresh.max():.1f} ms, "
          f"{polls.mean():.1f} searches per trial)")  # fmt: skip
    added50 = pct(rpc, 50) - base50
    print(f"\nRPC adds {added50:.3f} ms at p50, {pct(rpc, 99) - base99:.3f} ms at p99 "
          f"(target <= 0.5 ms at p50)")  # fmt: skip
    for cap, counters in ((args.batch_cap, counters_default), (1, counters_cap1)):
        served = sum(c.get("served", 0) for c in counters)
        batches = sum(c.get("batches", 0) for c in counters) or 1
        largest = max((c.get("max_batch", 0) for c in counters), default=0)
        print(f"shard servers with cap {cap}: {served} requests in {batches} batches "
              f"(mean {served / batches:.2f}, largest {largest})")  # fmt: skip
    print("webCPU = CPU ms of the gunicorn workers per request (warm-up included); "
          "err = non-200 answers + partial answers; took50 = median of the server's took_ms "
          "(API: search RPC + product cards inside the view; RPC: fan-out + merge in the "
          "client); text search used the warm query cache (vectors put in Redis up front, "
          "no encoder running); product cards warm after each query's first pass")  # fmt: skip
    tag = "_quick" if args.quick else ""
    path = OUT / f"search_bench{tag}.png"
    qps32 = {
        f"API cap {args.batch_cap}": api["similar", top]["qps"],
        "API cap 1": cap1_api["qps"],
        f"RPC cap {args.batch_cap}": rpc_default["qps"],
        "RPC cap 1": cap1_rpc["qps"],
    }
    plot({"in-process": inproc, "through RPC": rpc}, api, fresh, qps32, path)
    print(f"plot: {path}; total {time.perf_counter() - started:.0f}s")
    c8 = 8 if 8 in concurrency else concurrency[0]
    print(
        f"search_bench {args.n:,} vectors/{args.shards} shards: RPC adds {added50:.2f} ms p50; "
        f"API p99 at c={c8}: similar {api['similar', c8]['p99']:.1f} ms, text "
        f"{api['text', c8]['p99']:.1f} ms (target < 50); c={top} QPS similar "
        f"{api['similar', top]['qps']:.0f} (cap 1: {cap1_api['qps']:.0f}), RPC "
        f"{rpc_default['qps']:.0f} (cap 1: {cap1_rpc['qps']:.0f}); freshness p50 "
        f"{pct(fresh, 50):.1f} / p99 {pct(fresh, 99):.1f} ms (target p99 <= 200)"
    )


if __name__ == "__main__":
    main()
