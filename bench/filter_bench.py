"""Filtered search: a shard against raw FAISS searching the same index through the same
bitmap selector, from a broad filter down to a rare one.

Synthetic clustered 512-d vectors (workers.index.synthetic) whose price is uniform and
independent of the vector, so a price cap keeps a known fraction of the shard. For each
index kind and fraction: recall@10 against the exact top 10 of the matching vectors, how
many queries came back with fewer than 10 results, single-query latency, and the shard's
QPS as a ratio of raw FAISS with the parameters the shard scales for that filter (the
nprobe or efSearch the tuner found for depth 10 / fraction kept, as `Shard.scaled_params`
does). Raw FAISS walks a graph until it holds efSearch matches; the shard scans a graph's
rows instead when few vectors match (`Shard._scans_rows`). For a compressed kind
(`--kinds ivfpq`, not in the default run: OPQ training takes minutes) raw FAISS searches
the bare codes, without the shard's exact re-ranking of its candidates.

    python bench/filter_bench.py --quick            # 20k vectors, < 2 minutes
    python bench/filter_bench.py                    # 100k vectors
    python bench/filter_bench.py --n 1000000        # long: the graph build takes minutes
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

from bench.index_bench import recall, time_single
from bench.plotting import pyplot, save
from workers.index.bulk_build import build_bulk
from workers.index.shard import Shard
from workers.index.spec import choose_spec
from workers.index.synthetic import ClusterModel
from workers.index.types import SearchFilter, VectorAttrs

K = 10
FRACTIONS = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.003, 0.001)


def prices_of(ids: np.ndarray) -> np.ndarray:
    """Uniform in [0, 100), independent of the vector (a multiplicative hash of the id)."""
    return ((ids * 2_654_435_761) % 10_000 / 100).astype(np.float32)


def attrs_for(ids: np.ndarray) -> VectorAttrs:
    return VectorAttrs.build(ids, ids % 100, prices_of(ids), np.ones(len(ids), dtype=bool))


def raw_search(shard: Shard, flt: SearchFilter):
    """Raw FAISS over the shard's own bulk: the same bitmap and the same scaled knob."""
    bits, n_match, _ = shard.state.selections.matching(shard.state.version, shard.state.cols, flt)
    scaled = shard.scaled_params(shard.params, K, n_match / shard.n_vectors)
    if shard.spec.kind == "hnsw":
        params = faiss.SearchParametersHNSW(efSearch=int(scaled.ef_search))
    elif shard.spec.nlist:
        params = faiss.SearchParametersIVF(nprobe=int(scaled.nprobe))
    else:
        params = faiss.SearchParameters()
    selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
    params.sel = selector
    index = shard.state.backend.index

    def search(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return index.search(q, K, params=params)

    search.keep = (bits, selector)  # FAISS holds raw pointers to both
    return search


def exact_top(scores: np.ndarray, match: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Ids of the K best matching vectors per query."""
    masked = np.where(match[None, :], scores, -np.inf)
    part = np.argpartition(-masked, K, axis=1)[:, :K]
    order = np.argsort(-np.take_along_axis(masked, part, 1), axis=1, kind="stable")
    return ids[np.take_along_axis(part, order, 1)]


def run(n: int, kinds: list[str], args: argparse.Namespace) -> list[dict]:
    dim = 512
    layout = ClusterModel.make(dim, 1000, seed=1234)
    t = time.perf_counter()
    x = layout.sample(n, np.random.default_rng(5))
    ids = np.arange(n, dtype=np.int64)
    queries = layout.sample(args.queries, np.random.default_rng(999))
    prices = prices_of(ids)
    scores = queries @ x.T  # exact scores, masked per filter below
    print(f"# n={n:,}: data and exact scores in {time.perf_counter() - t:.1f}s", flush=True)
    rows = []
    for kind in kinds:
        spec = choose_spec(n, dim, kind)
        with tempfile.TemporaryDirectory() as work:
            t = time.perf_counter()
            built = build_bulk(
                iter([(ids, x, attrs_for(ids))]),
                dim,
                "bench",
                spec,
                work_dir=Path(work),
                tune_queries=args.tune_queries,
                recall_target=0.95,
            )
            shard = built.shard
            print(
                f"# {spec.factory}: built in {time.perf_counter() - t:.0f}s, "
                f"tuned {shard.params.to_dict()}, depths {shard.tune_report.get('depths')}",
                flush=True,
            )
            for fraction in FRACTIONS:
                row = measure(shard, fraction, queries, scores, prices, ids, args.single)
                rows.append(row)
                print(
                    f"{n:>9,} {spec.factory:<16} {fraction:>7.3f} {row['matches']:>8,} "
                    f"{row['recall']:>6.3f} {row['raw_recall']:>6.3f} "
                    f"{row['short']:>4}/{row['raw_short']:<4} "
                    f"{row['ms']:>8.2f} {row['raw_ms']:>8.2f} {row['ratio']:>7.2f}  "
                    f"{row['knobs']}",
                    flush=True,
                )
            del shard, built
    return rows


def measure(
    shard: Shard,
    fraction: float,
    queries: np.ndarray,
    scores: np.ndarray,
    prices: np.ndarray,
    ids: np.ndarray,
    single: int,
) -> dict:
    """One row: the shard and raw FAISS under a price cap keeping `fraction` of the shard."""
    flt = SearchFilter(max_price=100 * fraction - 0.005)  # prices step by 0.01
    match = prices <= np.float32(flt.max_price)
    truth = exact_top(scores, match, ids)
    found = shard.search(queries, K, flt).image_ids
    raw = raw_search(shard, flt)
    slots = raw(queries)[1]  # FAISS labels are the shard's slots
    raw_found = np.where(slots >= 0, shard.state.cols["image_ids"][np.maximum(slots, 0)], -1)
    qps, _, _, raw_qps = time_single(lambda q: shard.search(q, K, flt), raw, queries[:single])
    scaled = shard.scaled_params(shard.params, K, int(match.sum()) / shard.n_vectors)
    return {
        "n": len(ids),
        "spec": shard.spec.factory,
        "fraction": fraction,
        "matches": int(match.sum()),
        "recall": recall(found, truth),
        "raw_recall": recall(raw_found, truth),
        "short": int((found[:, K - 1] < 0).sum()),
        "raw_short": int((raw_found[:, K - 1] < 0).sum()),
        "ms": 1e3 / qps,
        "raw_ms": 1e3 / raw_qps,
        "ratio": qps / raw_qps,
        "knobs": ",".join(f"{k}={v}" for k, v in scaled.to_dict().items() if v is not None),
    }


def plot(rows: list[dict], tag: str) -> None:
    fig, ax = pyplot.subplots(figsize=(7, 5))
    for spec in dict.fromkeys(r["spec"] for r in rows):
        mine = [r for r in rows if r["spec"] == spec]
        frac = [r["fraction"] for r in mine]
        ax.plot(frac, [r["ms"] for r in mine], marker="o", label=f"shard {spec}")
        ax.plot(frac, [r["raw_ms"] for r in mine], marker="x", ls="--", label=f"raw {spec}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("fraction of the shard the filter keeps")
    ax.set_ylabel("mean single-query latency, ms")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    save(fig, f"filter_latency_{tag}.png")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20k vectors (< 2 minutes)")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--kinds", default="hnsw,ivf")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--single", type=int, default=100, help="queries timed one at a time")
    parser.add_argument("--tune-queries", type=int, default=200)
    args = parser.parse_args()
    n = 20_000 if args.quick else args.n
    faiss.omp_set_num_threads(1)
    started = time.perf_counter()
    print(
        f"{'n':>9} {'spec':<16} {'kept':>7} {'matches':>8} {'rec@10':>6} {'raw':>6} "
        f"{'short/raw':>9} {'ms':>8} {'raw ms':>8} {'x raw':>7}  knobs scaled to"
    )
    rows = run(n, args.kinds.split(","), args)
    plot(rows, "quick" if args.quick else f"{n}")
    graph = [r for r in rows if r["spec"].startswith("HNSW")]
    other = [r for r in rows if not r["spec"].startswith("HNSW")]
    parts = []
    if graph:
        rare = min(graph, key=lambda r: abs(r["fraction"] - 0.01))
        parts.append(
            f"HNSW 1% filter: shard {rare['ms']:.2f} ms vs raw {rare['raw_ms']:.2f} ms "
            f"({rare['ratio']:.1f}x), recall {rare['recall']:.3f} vs {rare['raw_recall']:.3f}"
        )
    if other:
        ratios = [r["ratio"] for r in other]
        parts.append(
            f"{other[0]['spec']} shard/raw {min(ratios):.2f}-{max(ratios):.2f}x, "
            f"recall >= {min(r['recall'] for r in other):.3f}"
        )
    short = sum(r["short"] for r in rows)
    print(
        f"SUMMARY n={n:,}: " + "; ".join(parts) + f"; short shard answers {short}; "
        f"{time.perf_counter() - started:.0f}s"
    )


if __name__ == "__main__":
    main()
