"""Where a search request's time goes past the shard: the Redis RPC and the view.

The issue-23 figures in one run, on search_bench's synthetic catalog (2 shards built with
build_bulk, one ShardService process per shard, a private redis-server, a SQLite catalog):

0. the floor: one Redis PING round trip at a time, its wall time and its CPU (caller and
   Redis), the unit the RPC path is paid in; machines differ in it severalfold; and the
   RPC's own code for one search (encode, decode, merge), timed in a tight loop on a
   real request and real replies, the part of the path that is not waiting or syscalls;
1. single-client latency, interleaved in blocks: shard 0 searched in-process (the
   baseline) vs `SearchClient.search` over both shards through Redis; the RPC's p50 minus
   the baseline's is what the path adds;
2. QPS through the RPC at 1 and 8 closed-loop callers (bench/closed_loop.py, own process);
   for 1 and 2, what a search costs on every side (caller, shard processes, Redis): CPU,
   wake-ups (voluntary context switches) and Redis commands. On a shared box the wall
   times swing with the neighbours' load; the counts do not, and CPU less;
3. the view's CPU: `GET /api/products/{id}/similar/?k=K` through Django's WSGI handler
   in this process (every middleware, DRF, throttle, card cache, renderer), one request at
   a time, each followed by the same search through the RPC client alone; the process
   CPU time (time.process_time) of each, the difference at p50 is what the web adds.

    python bench/rpc_path_bench.py --quick --work /tmp/rpb  # 50k vectors; builds once
    python bench/rpc_path_bench.py --quick --latency-only   # part 1 alone, one line
    python bench/rpc_path_bench.py --quick --profile view   # cProfile (CPU) of the view

With --work the shards and the catalog are built once (1-3 minutes on 2 busy cores) and
reused; a --quick run on them takes under a minute.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.in_process_view import ViewCaller, view_cpu  # noqa: E402
from bench.process_costs import Servers, wakeups  # noqa: E402
from bench.rpc_bench import pct  # noqa: E402
from bench.search_bench import closed_loop  # noqa: E402
from bench.search_data import DIM, fresh_vectors, query_products  # noqa: E402
from bench.search_procs import ShardProcs, web_env  # noqa: E402
from bench.served import served  # noqa: E402
from workers.index.shard import Shard  # noqa: E402
from workers.index.threads import use_search_threads  # noqa: E402
from workers.index.types import SearchFilter  # noqa: E402
from workers.rpc.client import SearchClient  # noqa: E402
from workers.rpc.merge import merge_shard_hits  # noqa: E402
from workers.rpc.protocol import (  # noqa: E402
    DEFAULT_LIMITS,
    REPLY_KEY_PREFIX,
    Reply,
    Request,
    SearchHits,
    SearchQuery,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)


def ping_floor(client, servers: Servers, n: int) -> tuple[np.ndarray, dict]:
    """(ms of each, cost a call) of `n` PINGs one at a time: what one round trip to Redis
    costs on this machine, the unit the RPC path is paid in."""
    me = [os.getpid()]
    took = np.empty(n)
    c0, w0, s0 = time.process_time(), wakeups(me), servers.sample()
    for i in range(n):
        t0 = time.perf_counter()
        client.ping()
        took[i] = time.perf_counter() - t0
    caller = time.process_time() - c0
    spent = servers.sample() - s0
    cost = {"cpu_ms": 1e3 * (caller + spent[0]) / n, "wakeups": (spent[1] + wakeups(me) - w0) / n,
            "redis_commands": spent[2] / n}  # fmt: skip
    return took * 1e3, cost


def code_cost(local: Shard, query: np.ndarray, k: int, n_shards: int) -> dict[str, float]:
    """Microseconds a search spends in the RPC's own code, each step the median of 5 tight
    loops over one real request (`query`) and the shard's real reply to it: the caller
    encodes once, decodes a reply per shard and merges them; each shard decodes the
    request and encodes its reply (in parallel, so one shard's share counts)."""
    found = local.search(query[None], k, SearchFilter())
    hits = SearchHits(found.product_ids, found.image_ids, found.scores)
    request = Request(
        id=os.urandom(16).hex(), reply_to=REPLY_KEY_PREFIX + "0" * 32,
        deadline=time.time() + 3600, payload=SearchQuery(query[None], k), expect=n_shards,
    )  # fmt: skip
    reply = Reply(id=request.id, payload=hits, shard=0)
    raw_request, raw_reply = encode_request(request), encode_reply(reply)
    steps = {
        "encode request": lambda: encode_request(request),
        "decode request": lambda: decode_request(raw_request, DEFAULT_LIMITS),
        "encode reply": lambda: encode_reply(reply),
        "decode reply": lambda: decode_reply(raw_reply, DEFAULT_LIMITS),
        "merge": lambda: merge_shard_hits([hits] * n_shards, k),
    }
    loops = 2000
    out = {}
    for name, step in steps.items():
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(loops):
                step()
            runs.append((time.perf_counter() - t0) / loops * 1e6)
        out[name] = float(np.median(runs))
    out["caller"] = out["encode request"] + n_shards * out["decode reply"] + out["merge"]
    out["shard"] = out["decode request"] + out["encode reply"]
    return out


def rpc_latency(
    local: Shard,
    client: SearchClient,
    probe: np.ndarray,
    k: int,
    rounds: int,
    servers: Servers,
    shards: ShardProcs,
):
    """(in-process ms, RPC ms, RPC CPU ms a search on every side, the shards' handler ms a
    search in place): blocks of 50 queries, the two paths taking turns."""
    before = shards.counters()
    inproc, rpc = [], []
    filters = SearchFilter()
    client_cpu = 0.0
    server = np.zeros(5)
    me = [os.getpid()]
    for _ in range(rounds):
        for start in range(0, len(probe), 50):
            block = probe[start : start + 50]
            for q in block:
                t0 = time.perf_counter()
                local.search(q[None], k, filters)
                inproc.append(time.perf_counter() - t0)
            c0, w0, s0 = time.process_time(), wakeups(me), servers.sample()
            for q in block:
                t0 = time.perf_counter()
                got = client.search(q, k, timeout_s=2.0)
                rpc.append(time.perf_counter() - t0)
                if got.partial:
                    raise RuntimeError("a shard missed the deadline")
            client_cpu += time.process_time() - c0
            server += servers.sample() - s0
            server[1] += wakeups(me) - w0
    n = len(rpc)
    per_call = {"cpu_ms": 1e3 * (client_cpu + server[0]) / n, "wakeups": server[1] / n,
                "redis_commands": server[2] / n, "split": 1e3 * np.array(
                    [client_cpu, server[3], server[4]]) / n}  # fmt: skip
    in_place = [
        1e3 * (a["handler_s"] - b["handler_s"]) / max(1, a["batches"] - b["batches"])
        for a, b in zip(shards.counters(), before, strict=True)
    ]
    return np.array(inproc) * 1e3, np.array(rpc) * 1e3, per_call, in_place


def load_cell(conc: int, args: argparse.Namespace, servers: Servers, **opts: object) -> dict:
    """A closed-loop cell, with the CPU a request cost the caller process, shards and Redis."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    s0 = servers.sample()
    r = closed_loop("rpc", conc, args, **opts)
    spent = servers.sample() - s0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    caller = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    served = max(1.0, r["qps"] * (args.seconds + args.warmup))  # warm-up requests count too
    r["cpu_ms"] = 1e3 * (caller + spent[0]) / served
    r["wakeups"] = (spent[1] + after.ru_nvcsw - before.ru_nvcsw) / served
    r["redis_commands"] = spent[2] / served
    r["split"] = 1e3 * np.array([caller, spent[3], spent[4]]) / served
    return r


def profile(fn, top: int = 30) -> None:
    prof = cProfile.Profile(time.process_time)  # CPU, not the waits on sockets
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top * 3)
    stats.sort_stats("cumulative").print_stats(top * 2)
    print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="50k vectors, short cells")
    parser.add_argument("--n", type=int, default=200_000, help="vectors in all shards")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--spec", default="hnsw", help="index spec of each shard (HNSW32)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=1000, help="latency samples per path")
    parser.add_argument("--views", type=int, default=1000, help="view requests measured")
    parser.add_argument("--seconds", type=float, default=10.0, help="per QPS cell")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--batch-cap", type=int, default=64)
    parser.add_argument("--work", type=Path, help="keep shards+DB here and reuse them")
    parser.add_argument("--latency-only", action="store_true", help="part 1 alone, one line")
    parser.add_argument("--profile", choices=["rpc", "view"], help="cProfile one path instead")
    args = parser.parse_args()
    if args.quick:
        args.n, args.queries, args.views, args.seconds = 50_000, 300, 300, 3.0
    use_search_threads(1)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    query_ids, query_vecs = query_products(args.n, 300)
    catalog = served(
        args.work, args.n, args.shards, args.spec, (query_ids, query_vecs),
        batch_cap=args.batch_cap, prefix="rpc-path-bench-",
    )  # fmt: skip
    with catalog as s:
        both = s.search
        servers = Servers(s.shards, s.redis, s.client)
        servers.calibrate(3.0)
        local, _ = Shard.load(
            s.work / "index" / "builds" / "shard-0" / "out", work_dir=s.work / "inproc-work"
        )
        probe = fresh_vectors(args.queries, seed=31)
        rpc_latency(local, both, probe[:100], args.k, 1, servers, s.shards)  # warm both paths
        view = ViewCaller(web_env(s.work / "data", s.redis.url, args.shards))
        view_cpu(view, query_ids, query_vecs, args.k, len(query_ids))  # every card cached
        if args.profile:
            if args.profile == "rpc":
                profile(lambda: rpc_latency(local, both, probe, args.k, 1, servers, s.shards))
            else:
                profile(lambda: view_cpu(view, query_ids, query_vecs, args.k, args.views))
            return
        pings, ping_cost = ping_floor(s.client, servers, args.queries)
        code = code_cost(local, probe[0], args.k, args.shards)
        inproc, rpc, rpc_cost, in_place = rpc_latency(
            local, both, probe, args.k, 2, servers, s.shards
        )
        if args.latency_only:
            added = pct(rpc, 50) - pct(inproc, 50)
            print(f"latency only: in-process p50 {pct(inproc, 50):.3f} ms, RPC p50 "
                  f"{pct(rpc, 50):.3f} ms, adds {added:.3f}; in place the shards' search "
                  f"{max(in_place):.3f} ms (mean, slowest shard); wake-ups a search "
                  f"{rpc_cost['wakeups']:.1f}; load avg {os.getloadavg()[0]:.1f}")  # fmt: skip
            return
        costs = view_cpu(view, query_ids, query_vecs, args.k, args.views)
        rpc_queries = s.work / "rpc-queries.npy"
        np.save(rpc_queries, probe)
        cells = {}
        for conc in (1, 8):
            cells[conc] = load_cell(
                conc,
                args,
                servers,
                redis_url=s.redis.url,
                shards=args.shards,
                queries=rpc_queries,
            )
    builds = s.builds

    base50 = pct(inproc, 50)
    view_cpu50, rpc_cpu50 = pct(costs[:, 0], 50), pct(costs[:, 1], 50)
    added_cpu = view_cpu50 - rpc_cpu50
    print(
        f"\nrpc_path_bench: {args.n:,} x {DIM} in {args.shards} shards "
        f"({builds[0]['spec']}, {builds[0]['params']}), k={args.k}; load avg "
        f"{load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end (shared cores: noisy)"
    )
    print(f"{'what':<40}{'p50 ms':>9}{'p99 ms':>9}{'q/s':>7}{'x base p50':>11}"
          f"{'CPU ms/q':>9}{'wakes/q':>8}{'cmds/q':>7}")  # fmt: skip

    def row(name: str, p50: float, p99: float, qps: float | None, cost: dict | None) -> None:
        print(
            f"{name:<40}{p50:9.3f}{p99:9.3f}"
            + (f"{qps:7.0f}" if qps is not None else f"{'':>7}")
            + f"{p50 / base50:11.2f}"
            + (f"{cost['cpu_ms']:9.3f}{cost['wakeups']:8.1f}{cost['redis_commands']:7.1f}"
               if cost is not None else "")
        )  # fmt: skip

    row("0. Redis PING, one at a time", pct(pings, 50), pct(pings, 99), 1e3 / pings.mean(),
        ping_cost)  # fmt: skip
    print(f"   the RPC's own code a search, hot (us): caller {code['caller']:.1f} (encode "
          f"{code['encode request']:.1f}, decode {args.shards} x {code['decode reply']:.1f}, "
          f"merge {code['merge']:.1f}); each shard {code['shard']:.1f} (decode "
          f"{code['decode request']:.1f}, encode {code['encode reply']:.1f})")  # fmt: skip
    row("1. shard 0 in-process (baseline)", base50, pct(inproc, 99), 1e3 / inproc.mean(), None)
    print(f"   each shard's search as it runs in place (its RPC handler, mean): "
          f"{', '.join(f'{ms:.3f}' for ms in in_place)} ms; shard 0 in-process, mean: "
          f"{inproc.mean():.3f} ms")  # fmt: skip
    row(
        f"1. RPC, {args.shards} shard(s), one at a time",
        pct(rpc, 50),
        pct(rpc, 99),
        1e3 / rpc.mean(),
        rpc_cost,
    )
    for conc, r in cells.items():
        err = r["errors"] + r["partial"]
        name = f"2. RPC, {args.shards} shard(s), {conc} callers ({err} err)"
        row(name, r["p50"], r["p99"], r["qps"], r)
    split = {"1. one at a time": rpc_cost["split"]}
    split.update({f"2. {conc} callers": r["split"] for conc, r in cells.items()})
    print("   CPU ms a search by side: " + "; ".join(
        f"{name}: caller {c:.3f}, shards {sh:.3f}, Redis {rd:.3f}"
        for name, (c, sh, rd) in split.items()))  # fmt: skip
    for name, col in (
        ("3. similar view, web process CPU", 0),
        ("3. RPC search alone, web process CPU", 1),
        ("3. similar view, wall", 2),
        ("3. RPC search alone, wall", 3),
    ):
        ms = costs[:, col]
        row(name, pct(ms, 50), pct(ms, 99), None, None)
    added = pct(rpc, 50) - base50
    print(
        f"rpc_path_bench {args.n:,}/{args.shards} shards: RPC adds {added:.3f} ms p50 over "
        f"{base50:.3f} in-process (x{pct(rpc, 50) / base50:.2f}; the shards' search in place "
        f"{max(in_place):.3f} mean; a PING round trip "
        f"{pct(pings, 50):.3f}, its own code hot {(code['caller'] + code['shard']) / 1e3:.3f}); "
        f"8 callers "
        f"{cells[8]['qps']:.0f} q/s at {cells[8]['cpu_ms']:.3f} CPU ms and "
        f"{cells[8]['wakeups']:.1f} wake-ups a query (1 caller: {cells[1]['qps']:.0f} q/s); "
        f"view adds {added_cpu:.3f} ms CPU p50 over the RPC's {rpc_cpu50:.3f}; "
        f"{time.perf_counter() - started:.0f}s"
    )


if __name__ == "__main__":
    main()
