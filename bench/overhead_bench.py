"""Where a single query's time goes: raw FAISS against the least any Python wrapper adds.

A shard must take a lock, check and normalise the query, call FAISS and group the hits by
product; on a query that FAISS answers in tens of microseconds that floor alone costs a
noticeable fraction. For a shard built like index_bench's (clustered 512-d vectors, 1% of
ids deleted, 1% fresh), each nprobe times, query by query and alternating:

- raw: ``index.search`` through FAISS's Python API, the baseline of every ratio;
- C++ call: the same search through ``search_c`` without the wrapper (``search_with``);
- least wrapper: a readers-writer lock, the query check, the C++ call for 2k hits and the
  grouping by product, with nothing else (no deletes, no delta, no filters, no retries);
- shard: ``Shard.search`` as the RPC server calls it, the nprobe being the shard's own knobs;
- knobs given: the same with the nprobe given per query.

    python bench/overhead_bench.py --quick          # < 1 minute
    python bench/overhead_bench.py                  # 100k IVF1024,Flat, nprobe 1..64
    python bench/overhead_bench.py --n 1000000      # 1M IVF4096,Flat (a few minutes)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.index_bench import attrs_for, knobs_of
from workers.index.bulk_build import build_bulk
from workers.index.faiss_calls import search_with
from workers.index.grouping import top_products
from workers.index.rwlock import RWLock
from workers.index.spec import IndexSpec, SearchParams, choose_spec
from workers.index.synthetic import ClusterModel
from workers.index.vectors import unit_queries
from workers.malloc import keep_freed_memory

K = 10


def timed(variants: dict[str, object], queries: np.ndarray, reps: int) -> dict[str, float]:
    """Mean microseconds a query of each variant, best of `reps` passes. The variants take
    turns query by query, each on a query a share of the list away from the others', so a
    burst of load hits all alike and none finds the lists another just read in cache."""
    n, names = len(queries), list(variants)
    best = dict.fromkeys(names, np.inf)
    for _ in range(reps):
        spent = dict.fromkeys(names, 0.0)
        for i in range(n):
            for j, name in enumerate(names):
                q = queries[(i + j * n // len(names)) % n][None]
                t = time.perf_counter()
                variants[name](q)
                spent[name] += time.perf_counter() - t
        for name in names:
            best[name] = min(best[name], 1e6 * spent[name] / n)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer queries and probes")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    started = time.perf_counter()
    faiss.omp_set_num_threads(1)
    keep_freed_memory()  # as the shard workers do
    n, dim = args.n, args.dim
    layout = ClusterModel.make(dim, 1000, seed=1234)
    x = layout.sample(n, np.random.default_rng(10_000))
    fresh = layout.sample(n // 100, np.random.default_rng(7))
    queries = layout.sample(500 if args.quick else args.queries, np.random.default_rng(999))
    ids = np.arange(n + len(fresh), dtype=np.int64)
    spec = choose_spec(n, dim, "ivf")
    base = ids[:n]  # (the fresh ids follow)
    batches = (
        (base[j : j + 50_000], x[j : j + 50_000], attrs_for(base[j : j + 50_000]))
        for j in range(0, n, 50_000)
    )
    with tempfile.TemporaryDirectory() as work:
        built = build_bulk(batches, dim, "bench", IndexSpec(spec.factory), work_dir=Path(work))
        shard = built.shard
        shard.delete(np.random.default_rng(1).choice(n, size=n // 100, replace=False))
        shard.upsert(ids[n:], fresh, attrs_for(ids[n:]))
        del x
        raw = (
            shard.state.backend.index
        )  # the shard's own lists, searched by FAISS alone (as index_bench)
        products = images = ids  # one image a product, as attrs_for says
        lock = RWLock()
        tuned = int(shard.params.nprobe)
        probes = [1, tuned, 16] if args.quick else sorted({1, 2, 4, 8, 16, 32, 64, tuned})
        print(f"# {n:,} x {dim} {spec.factory}, tuned nprobe {tuned}; microseconds a query")
        print(
            f"{'nprobe':>6} {'raw':>8} {'C++ call':>9} {'x raw':>6} {'least':>9} {'x raw':>6} "
            f"{'shard':>8} {'x raw':>6} {'shard-least':>11} "
            f"{'given':>8} {'x raw':>6}"
        )
        rows = []
        for nprobe in probes:
            params = faiss.SearchParametersIVF(nprobe=nprobe)
            asked = SearchParams(nprobe=nprobe)

            def least(q, params=params):
                with lock.read():
                    scores, labels = search_with(raw, unit_queries(q, dim), 2 * K, params)
                    meta = {"matches": n}
                    return top_products(scores, labels, K, products, images, meta)[0]

            variants = {
                "raw": lambda q, params=params: raw.search(q, K, params=params),
                "call": lambda q, params=params: search_with(raw, q, K, params),
                "least": least,
                "shard": lambda q: shard.search(q, K),
                "given": lambda q, asked=asked: shard.search(q, K, params=asked),
            }
            with knobs_of(shard, asked):
                t = timed(variants, queries, 1 if args.quick else 3)
            rows.append((nprobe, t))
            print(
                f"{nprobe:>6} {t['raw']:8.1f} {t['call']:9.1f} {t['raw'] / t['call']:6.2f} "
                f"{t['least']:9.1f} {t['raw'] / t['least']:6.2f} "
                f"{t['shard']:8.1f} {t['raw'] / t['shard']:6.2f} {t['shard'] - t['least']:11.1f} "
                f"{t['given']:8.1f} {t['raw'] / t['given']:6.2f}",
                flush=True,
            )
    t = dict(rows)[tuned]
    print(
        f"SUMMARY {n:,} {spec.factory} tuned nprobe {tuned}: raw {t['raw']:.0f} us a query; "
        f"shard {t['raw'] / t['shard']:.2f}x raw ({t['raw'] / t['given']:.2f}x given the knobs), "
        f"least wrapper {t['raw'] / t['least']:.2f}x, "
        f"bare C++ call {t['raw'] / t['call']:.2f}x; {time.perf_counter() - started:.0f}s"
    )


if __name__ == "__main__":
    main()
