"""Index engine benchmark: recall@10, QPS and latency of shards against raw FAISS.

Synthetic clustered 512-d vectors (workers.index.synthetic), held-out queries, exact ground
truth. For each index kind: build + train time, auto-tuned parameters, a sweep of
nprobe/efSearch (and re-rank candidates), bytes per vector, and the shard's QPS as a ratio
of raw FAISS searching the same trained index with the same parameters, measured in the same
run with 1% of the ids deleted and 1% of the vectors in the delta. The shard searches with
each row's knobs as its own and is given none per query, as the RPC server calls it (see
`knobs_of`). A graph (HNSW) is timed
once more after folding its delta, as a live replica does a chunk at a time ("folded").
The "k=20" row asks for the API's default k with the tuned setting, which the shard
scales to the depth it needs (its recall column is recall@20; raw FAISS gets the same
scaled knob), and its note gives recall@20 with the k=10 setting unscaled.

    python bench/index_bench.py --quick            # < 2 minutes
    python bench/index_bench.py                    # 100k and 1M
    python bench/index_bench.py --scale 10m        # OPQ+IVF+PQ at 10M (long)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import logging
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.plotting import pyplot, save
from workers.index.bulk_build import build_bulk
from workers.index.shard import Shard
from workers.index.spec import IndexSpec, SearchParams, choose_spec, nlist_for
from workers.index.synthetic import ClusterModel, exact_knn
from workers.index.types import VectorAttrs
from workers.malloc import keep_freed_memory

K = 10
K_API = 20  # the search API's default k: scaled past the tuned k=10 (`Shard.scaled_params`)
REFINE_MAX = 2_000_000  # float32 rows for FAISS's IndexRefine baseline: 4 GB at 2M x 512


def attrs_for(ids: np.ndarray) -> VectorAttrs:
    return VectorAttrs.build(ids, ids % 100, (ids % 500).astype(np.float32), ids % 4 != 0)


def specs_for(n: int, dim: int, kinds: list[str], quick: bool) -> list[IndexSpec]:
    out = []
    for kind in kinds:
        if kind == "flat" and n > 200_000:
            continue
        if kind == "ivfpq" and quick:
            out.append(IndexSpec(f"IVF{nlist_for(n)},PQ16", rerank=True))
        else:
            out.append(choose_spec(n, dim, kind))
    return out


def sweep_params(shard: Shard) -> list[SearchParams]:
    spec = shard.spec
    tuned = shard.params
    if spec.kind == "hnsw":
        return [SearchParams(ef_search=e) for e in (16, 32, 64, 128, 256)]
    if spec.nlist:
        probes = [p for p in (1, 2, 4, 8, 16, 32, 64, 128) if p <= spec.nlist]
        rk = tuned.rerank_k
        return [SearchParams(nprobe=p, rerank_k=rk) for p in probes]
    return []  # exact flat: nothing to sweep, its one row is the tuned one


@contextlib.contextmanager
def knobs_of(shard: Shard, params: SearchParams) -> Iterator[None]:
    """`shard` searching with `params` as its own knobs, as a shard tuned to them does: its
    searches then take no params, as the RPC server's do."""
    tuned = shard.params
    shard.params = params
    try:
        yield
    finally:
        shard.params = tuned


def raw_params(
    shard: Shard, params: SearchParams, index: faiss.Index, k: int = K
) -> tuple[faiss.SearchParameters | None, int]:
    """The same knobs for a plain FAISS search of `index` (see ``raw_index_of``)."""
    if shard.spec.kind == "hnsw":
        base = faiss.SearchParametersHNSW(efSearch=int(params.ef_search))
    elif shard.spec.nlist:
        base = faiss.SearchParametersIVF(nprobe=int(params.nprobe))
    else:
        base = None
    if not shard.spec.rerank:
        return base, k
    if not isinstance(index, faiss.IndexRefine):  # too big to refine in RAM: bare candidates
        return base, max(k, params.rerank_k or 0)
    refine = faiss.IndexRefineSearchParameters(k_factor=max(k, params.rerank_k or 0) / k)
    if base is not None:
        refine.base_index_params = base
    return refine, k


def raw_index_of(shard: Shard, keep_alive: list) -> faiss.Index:
    """Plain FAISS with the same trained index; compressed specs get FAISS's own exact
    re-ranking (IndexRefine over float32 rows in RAM), the baseline of the shard's
    memory-mapped bfloat16 re-rank file. Labels of the bulk are its slots, so the refine
    index is positional.
    Past REFINE_MAX vectors the float32 copy would not fit: the bare index is timed."""
    bulk = shard.state.backend.index
    if not shard.spec.rerank or bulk.ntotal > REFINE_MAX:
        return bulk
    flat = faiss.IndexFlatIP(shard.dim)
    n = bulk.ntotal
    for start in range(0, n, 100_000):
        flat.add(shard.state.backend.rerank.gather(np.arange(start, min(n, start + 100_000))))
    base = faiss.clone_index(bulk)  # the shard's own takes fresh codes the refine rows lack
    refine = faiss.IndexRefine(base, flat)
    keep_alive.extend([base, flat])  # IndexRefine does not own them
    return refine


def current_rss() -> int:
    """Anonymous resident bytes of this process now (not the peak, and not the pages of the
    memory-mapped re-rank file, which the kernel may drop and read again)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def time_single(
    fn, baseline, queries: np.ndarray, passes: int = 1
) -> tuple[float, float, float, float]:
    """(QPS, p50 ms, p99 ms) of `fn` issuing one query at a time, and the baseline's QPS.

    The two alternate call by call, so a burst of load from a neighbour on this shared
    machine slows both alike instead of skewing their ratio; the baseline takes the query
    half a list away, or it would find the shard's lists still in the CPU cache. Each QPS
    is that of the faster of `passes` passes over the queries (a burst lasting a few ms
    moved a 300-query ratio by 0.1 at 100k); the percentiles are of every pass's calls.
    """
    n = len(queries)
    lat = np.empty((passes, n))
    base = np.empty((passes, n))
    for run in range(passes):
        for i in range(n):
            t = time.perf_counter()
            fn(queries[i : i + 1])
            t1 = time.perf_counter()
            j = (i + n // 2) % n
            baseline(queries[j : j + 1])
            base[run, i] = time.perf_counter() - t1
            lat[run, i] = t1 - t
    p50, p99 = 1e3 * np.percentile(lat, [50, 99])
    return n / lat.sum(axis=1).min(), p50, p99, n / base.sum(axis=1).min()


def time_batch(fn, baseline, queries: np.ndarray, passes: int = 1) -> tuple[float, float]:
    """QPS of `fn` and of the baseline given all the queries at once, taking turns, each
    the faster of `passes` calls."""
    spent = np.empty((passes, 2))
    for run in range(passes):
        for side, call in enumerate((fn, baseline)):
            t = time.perf_counter()
            call(queries)
            spent[run, side] = time.perf_counter() - t
    qps, raw_qps = len(queries) / spent.min(axis=0)
    return float(qps), float(raw_qps)


def recall(found: np.ndarray, truth: np.ndarray, k: int = K) -> float:
    return float(
        np.mean([np.intersect1d(f[:k], t[:k]).size / k for f, t in zip(found, truth, strict=True)])
    )


def run_size(n: int, args: argparse.Namespace, rows: list[dict], curves: dict) -> None:
    dim = args.dim
    layout = ClusterModel.make(dim, args.clusters, seed=1234)
    block_rows = 100_000
    n_blocks = -(-n // block_rows)
    stream_only = n > 2_000_000  # never hold 10M float32 vectors: regenerate blocks instead
    cache: dict[int, np.ndarray] = {}

    def block(i: int) -> np.ndarray:
        """Block i of the database, reproducible from its own seed."""
        if i in cache:
            return cache[i]
        rows = min(block_rows, n - i * block_rows)
        x = layout.sample(rows, np.random.default_rng(10_000 + i))
        if not stream_only:
            cache[i] = x
        return x

    t = time.perf_counter()
    extra = max(1, n // 100)
    fresh = layout.sample(extra, np.random.default_rng(7))  # 1% new vectors for the delta
    queries = layout.sample(args.queries, np.random.default_rng(999))
    ids = np.arange(n + extra, dtype=np.int64)
    deleted = np.random.default_rng(1).choice(n, size=max(1, n // 100), replace=False)
    live = np.ones(n + extra, dtype=bool)
    live[deleted] = False
    live_ids = ids[live]
    # ground truth of the modified shard: base minus 1% deleted plus 1% new in delta
    live_blocks = (
        block(i)[live[i * block_rows : i * block_rows + len(block(i))]] for i in range(n_blocks)
    )
    _, gt_rows = exact_knn(itertools.chain(live_blocks, [fresh]), queries, K_API)
    truth = live_ids[gt_rows]
    print(f"# n={n:,}: data + exact ground truth in {time.perf_counter() - t:.1f}s", flush=True)

    def batches():
        for i in range(n_blocks):
            x = block(i)
            for j in range(0, len(x), 50_000):
                b_ids = ids[i * block_rows + j : i * block_rows + j + len(x[j : j + 50_000])]
                yield b_ids, x[j : j + 50_000], attrs_for(b_ids)

    for spec in specs_for(n, dim, args.kinds, args.quick):
        gc.collect()
        with tempfile.TemporaryDirectory(dir=args.work) as work:
            rss_before = current_rss()
            t = time.perf_counter()
            built = build_bulk(
                batches(),
                dim,
                "bench",
                spec,
                work_dir=Path(work),
                tune_queries=args.tune_queries,
                recall_target=0.95,
                train_threads=args.train_threads,
                add_threads=args.add_threads,
            )
            build_s = time.perf_counter() - t
            rss_growth = (current_rss() - rss_before) / n
            shard = built.shard
            owned: list = []
            raw_index = raw_index_of(shard, owned)  # the same trained index, without the shard
            shard.delete(deleted)
            shard.upsert(ids[n:], fresh, attrs_for(ids[n:]))
            stats = shard.stats()
            mem = stats["memory_bytes"] / stats["vectors"]
            disk = stats["rerank_disk_bytes"] / max(1, stats["vectors"])
            faiss.omp_set_num_threads(1)
            single_q = queries[: args.single]

            def shard_fn(k: int = K, shard: Shard = shard):
                return lambda q: shard.search(q, k)

            def raw_fn(
                p: SearchParams, k: int = K, shard: Shard = shard, index: faiss.Index = raw_index
            ):
                fp, kb = raw_params(shard, p, index, k)
                return lambda q: index.search(q, kb, params=fp)

            curve = []

            def point(
                p: SearchParams,
                note: str = "",
                k: int = K,
                shard: Shard = shard,
                spec: IndexSpec = spec,
                single_q: np.ndarray = single_q,
                curve: list = curve,
            ) -> None:
                """One row: recall@k, single and batched QPS against raw FAISS at `p`
                (k past the tuned one: the shard scales its tuned setting to `p` itself)."""
                tuned = p == shard.params and k == K
                shard_k, raw_k = shard_fn(k), raw_fn(p, k)
                with knobs_of(shard, p if k == K else shard.params):  # k=20 scales the tuned
                    found = shard.search(queries, k).image_ids
                    qps1, p50, p99, raw1 = time_single(shard_k, raw_k, single_q, args.passes)
                    qpsb, rawb = time_batch(shard_k, raw_k, queries, args.passes)
                row = {
                    "n": n,
                    "spec": spec.factory,
                    "params": _fmt(p) + note,
                    "recall": recall(found, truth, k),
                    "qps1": qps1,
                    "p50": p50,
                    "p99": p99,
                    "qpsb": qpsb,
                    "ratio1": qps1 / raw1,
                    "ratiob": qpsb / rawb,
                    "tuned": tuned,
                }
                if p != shard.params and k == K:
                    curve.append((row["recall"], qps1))
                rows.append(row)
                _print_row(row)

            for p in [*sweep_params(shard), shard.params]:
                point(p)
            as_tuned = recall(shard.search_images(queries, K_API)[1], truth, K_API)
            point(shard.scaled_params(shard.params, K_API), f" k={K_API} ({as_tuned:.3f})", K_API)
            if shard.fold_delta():  # a graph: what a live replica's queries see a moment later
                while shard.fold_delta():
                    pass
                point(shard.params, " folded")
            curves[f"{spec.factory} n={n:,}"] = curve
            extra_info = ""
            if spec.rerank:
                bare = SearchParams(nprobe=shard.params.nprobe, rerank_k=K)
                r_bare = recall(shard.search(queries, K, params=bare).image_ids, truth)
                extra_info = f" recall without re-rank {r_bare:.3f}"
            shard.compact()  # steady state: the delta folded in, removed vectors dropped
            mem_compacted = shard.memory_bytes() / shard.n_vectors
            tuned_recall = float(built.tune.get("recall_at_k", np.nan))  # none: exact
            print(
                f"# {spec.factory} n={n:,}: build {build_s:.0f}s "
                f"(train {built.train_seconds:.0f}s, "
                f"add {built.add_seconds:.0f}s, tune {built.tune_seconds:.0f}s), tuned "
                f"{_fmt(shard.params)} recall@10 tune-set {tuned_recall:.3f}, "
                f"{mem:.1f} B/vector in RAM by account with 1% in delta, {mem_compacted:.1f} "
                f"compacted ({rss_growth:.0f} B/vector of anonymous RSS growth), {disk:.0f} "
                f"B/vector re-rank file on disk{extra_info}",
                flush=True,
            )
            rows.append(
                {
                    "summary": True,
                    "n": n,
                    "spec": spec.factory,
                    "mem": mem,
                    "mem_compacted": mem_compacted,
                    "build": build_s,
                }
            )
            del shard, built, raw_index, owned
    cache.clear()


def _fmt(p: SearchParams) -> str:
    parts = [f"{k}={v}" for k, v in p.to_dict().items() if v is not None]
    return ",".join(parts) or "-"


def _print_row(r: dict) -> None:
    mark = "*" if r["tuned"] else " "
    print(
        f"{r['n']:>9,} {r['spec']:<24} {r['params']:<22}{mark} {r['recall']:6.3f} "
        f"{r['qps1']:8.0f} {r['p50']:7.2f} {r['p99']:7.2f} {r['qpsb']:8.0f} "
        f"{r['ratio1']:6.2f} {r['ratiob']:6.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20k vectors, small sweep (< 2 min)")
    parser.add_argument("--scale", choices=["100k", "1m", "both", "10m"], default="both")
    parser.add_argument("--kinds", default="flat,ivf,ivfpq,hnsw")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--single", type=int, default=300, help="queries timed one at a time")
    parser.add_argument(
        "--passes", type=int, default=3, help="passes over them; the faster pass counts"
    )
    parser.add_argument("--tune-queries", type=int, default=500)
    parser.add_argument("--train-threads", type=int, default=1, help="1: OPQ stalls with 2 here")
    parser.add_argument("--add-threads", type=int, default=1)
    parser.add_argument("--work", default=None, help="directory for re-rank files")
    args = parser.parse_args()
    args.kinds = args.kinds.split(",")
    if args.quick:
        sizes = [20_000]
        args.queries, args.single, args.tune_queries = 200, 100, 100
        args.kinds = [k for k in args.kinds if k != "hnsw"]
    elif args.scale == "10m":
        sizes, args.kinds = [10_000_000], ["ivfpq"]
    else:
        sizes = {"100k": [100_000], "1m": [1_000_000], "both": [100_000, 1_000_000]}[args.scale]
    logging.basicConfig(level=logging.INFO, format="# %(asctime)s %(message)s")  # build steps
    faiss.omp_set_num_threads(1)
    keep_freed_memory()  # as the shard workers do (helps the shard's temporaries most)
    print(
        f"{'n':>9} {'spec':<24} {'params':<23} {'rec@10':>6} {'QPS1':>8} {'p50ms':>7} "
        f"{'p99ms':>7} {'QPSbat':>8} {'x1raw':>6} {'xBraw':>6}"
    )
    rows: list[dict] = []
    curves: dict[str, list] = {}
    started = time.perf_counter()
    for n in sizes:
        run_size(n, args, rows, curves)
    _plot(curves, "quick" if args.quick else args.scale)
    tuned = [r for r in rows if r.get("tuned")]
    big = max(r["n"] for r in tuned)
    worst = min(r["ratio1"] for r in tuned)
    best_recall = {r["spec"]: r["recall"] for r in tuned if r["n"] == big}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        f"SUMMARY n={big:,}: tuned recall@10 "
        + ", ".join(f"{s} {v:.3f}" for s, v in best_recall.items())
        + f"; shard/raw single-query QPS >= {worst:.2f}x; peak RSS {peak:.1f} GB; "
        f"{time.perf_counter() - started:.0f}s"
    )


def _plot(curves: dict[str, list], tag: str) -> None:
    fig, ax = pyplot.subplots(figsize=(7, 5))
    for name, pts in curves.items():
        if pts:
            r, q = zip(*sorted(pts), strict=True)
            ax.plot(r, q, marker="o", label=name)
    ax.set_xlabel("recall@10")
    ax.set_ylabel("single-query QPS (1 thread)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # exact flat alone has no sweep to draw
        ax.legend(fontsize=7)
    save(fig, f"index_recall_qps_{tag}.png")


if __name__ == "__main__":
    main()
