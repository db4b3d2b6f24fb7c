"""Auto-tuning: the cheapest search parameters that reach a recall target on held-out queries.

Recall is measured at the image level against exact neighbours; a held-out query that is
itself in the index is excluded from both lists, so it cannot inflate the figure. The knob
is swept by powers of two up to the first that passes, then bisected between that one and
the last that failed: latency grows about linearly with nprobe and efSearch, so stopping at
a power of two can cost up to twice the needed time. A setting passes when its recall,
less one standard error of the mean over the queries (the measured spread), still reaches
the target: a fixed margin would be too wide for many queries and too narrow for few.
Besides the setting for k, the knob each deeper search needs is tuned too (`tune_depths`),
and for compressed shards the re-rank candidates a filter needs: filtered searches and
requests for more than k results scale along that table (`depth.DepthTable`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from workers.index.shard import Shard
from workers.index.spec import EF_SEARCH_MAX, RERANK_K_MAX, SearchParams

logger = logging.getLogger(__name__)

RERANK_STEPS = (25, 50, 100, 200, 400, 800, 1600, 3200)
PLATEAU_GAIN = 0.001  # recall gained by doubling a knob below which its sweep stops
EF_STEPS = (16, 32, 64, 128, 256, 512, 1024)
# Depths past k a search may need: the API's default k, and the 10th match of a filter
# keeping 10% or 1% of the vectors (a fraction s puts the k-th match near rank k/s)
DEPTHS = (20, 100, 1000)
DEPTH_QUERIES = 200  # recall@1000 averages 1000 neighbours a query: fewer queries suffice
# a deeper knob's plateau: recall@20 over 200 queries moves ~0.005 by chance, and doubling
# nprobe for less (20k IVF512,PQ16 at 256 -> 512: 0.9245 -> 0.926) doubled the latency
DEPTH_PLATEAU_GAIN = 0.005


def query_hits(
    found: np.ndarray, truth: np.ndarray, own: np.ndarray | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(true neighbours found, true neighbours there are) per query, at k, each query's own
    id (if given) removed from both lists first. A shard with fewer than k vectors has
    fewer true neighbours (-1 pads `truth`): recall is over those, or it could never reach 1."""
    hits = np.zeros(len(found), dtype=np.int64)
    expected = np.zeros(len(found), dtype=np.int64)
    for row, (f, t) in enumerate(zip(found, truth, strict=True)):
        if own is not None:
            f, t = f[f != own[row]], t[t != own[row]]
        t = t[:k][t[:k] >= 0]
        hits[row] = np.intersect1d(f[:k][f[:k] >= 0], t).size
        expected[row] = t.size
    return hits, expected


def recall_excluding(found: np.ndarray, truth: np.ndarray, own: np.ndarray | None, k: int) -> float:
    """recall@k over all queries (see `query_hits`)."""
    hits, expected = query_hits(found, truth, own, k)
    total = int(expected.sum())
    return int(hits.sum()) / total if total else 1.0


def recall_spread(hits: np.ndarray, expected: np.ndarray) -> float:
    """Standard error of recall (total hits / total expected) over the queries, as a ratio
    estimate: how far another draw of as many queries would move the figure."""
    n, total = len(hits), float(expected.sum())
    if n < 2 or total == 0:
        return 0.0
    residual = hits - (hits.sum() / total) * expected
    return float(np.sqrt((residual.astype(np.float64) ** 2).sum() / (n * (n - 1))) * n / total)


@dataclass(frozen=True)
class Measured:
    """One setting on the held-out queries: recall@k, its standard error, batched time."""

    params: SearchParams
    recall: float
    spread: float
    seconds: float

    def passes(self, target: float, margin: float | None) -> bool:
        """Recall reaches `target` by `margin` (None: by its own measured spread)."""
        return self.recall >= target + (self.spread if margin is None else margin)

    def row(self) -> dict[str, object]:
        return {
            **self.params.to_dict(),
            "recall": self.recall,
            "spread": self.spread,
            "ms_per_query": 1e3 * self.seconds,
        }


def measure(
    shard: Shard,
    queries: np.ndarray,
    truth: np.ndarray,
    params: SearchParams,
    k: int = 10,
    own: np.ndarray | None = None,
) -> Measured:
    """Recall@k, its spread and seconds per query (batched) of one parameter setting."""
    extra = 1 if own is not None else 0
    start = time.perf_counter()
    _, found = shard.search_images(queries, k + extra, params)
    elapsed = (time.perf_counter() - start) / len(queries)
    hits, expected = query_hits(found, truth, own, k)
    total = int(expected.sum())
    recall = int(hits.sum()) / total if total else 1.0
    return Measured(params, recall, recall_spread(hits, expected), elapsed)


@dataclass(frozen=True)
class KnobRange:
    """One knob swept with the others fixed (`base`): powers of two in `steps`, and the
    cheapest value that means anything (`lowest`) to bisect down to."""

    base: SearchParams
    knob: str | None  # None: nothing to turn (one setting)
    steps: tuple[int, ...]
    lowest: int = 1

    def at(self, value: int) -> SearchParams:
        return replace(self.base, **{self.knob: value}) if self.knob else self.base


def candidate_grid(shard: Shard, k: int = 10) -> list[KnobRange]:
    """The knobs to sweep, each from cheapest to most expensive."""
    spec = shard.spec
    nlist = spec.nlist
    if spec.kind == "hnsw":  # a graph search keeps max(efSearch, k) candidates
        steps = tuple(ef for ef in EF_STEPS if ef > k) or (k,)
        return [KnobRange(SearchParams(), "ef_search", steps, lowest=k)]
    if nlist:
        probes = tuple(p for p in (2**i for i in range(20)) if p <= nlist)
        if spec.rerank:
            return [KnobRange(SearchParams(rerank_k=r), "nprobe", probes) for r in RERANK_STEPS]
        return [KnobRange(SearchParams(), "nprobe", probes)]
    if spec.rerank:
        return [KnobRange(SearchParams(), "rerank_k", RERANK_STEPS, lowest=k)]
    return [KnobRange(SearchParams(), None, ())]


def bisect_step(low: int, high: int) -> bool:
    """Whether the gap between a failing `low` and a passing `high` is still worth halving:
    wider than 1/16 of `high` (about linear cost: within 7% of the cheapest passing)."""
    return high - low > max(1, high // 16)


def cheapest_passing(
    knobs: KnobRange,
    run: Callable[[SearchParams], Measured],
    target: float,
    margin: float | None,
    slower_than: float | None = None,
) -> Measured | None:
    """The cheapest setting of `knobs` that passes (None if none does): powers of two up to
    the first that passes, then bisection between it and the last that failed. Stops early
    on a plateau, or once a setting is slower than `slower_than` seconds."""
    if knobs.knob is None:
        only = run(knobs.base)
        return only if only.passes(target, margin) else None
    low, previous = knobs.lowest - 1, -1.0  # low: the largest value known to fail
    passing: Measured | None = None
    for value in knobs.steps:
        got = run(knobs.at(value))
        if got.passes(target, margin):
            passing = got
            break
        if slower_than is not None and got.seconds > slower_than:
            return None
        if got.recall < previous + PLATEAU_GAIN:
            return None  # more of this knob will not help
        low, previous = value, got.recall
    if passing is None:
        return None
    high = getattr(passing.params, knobs.knob)
    low = max(low, knobs.lowest - 1)
    while bisect_step(low, high):
        middle = (low + high) // 2
        got = run(knobs.at(middle))
        if got.passes(target, margin):
            high, passing = middle, got
        else:
            low = middle
    return passing


def autotune(
    shard: Shard,
    queries: np.ndarray,
    truth: np.ndarray,
    *,
    k: int = 10,
    target: float = 0.95,
    own: np.ndarray | None = None,
    margin: float | None = None,
) -> dict[str, object]:
    """Pick the fastest setting whose recall on the held-out queries reaches `target` by
    `margin` (None: by its own standard error); store it and its recall on the shard."""
    tried: list[Measured] = []

    def run(params: SearchParams) -> Measured:
        got = measure(shard, queries, truth, params, k, own)
        tried.append(got)
        return got

    best: Measured | None = None
    for knobs in candidate_grid(shard, k):
        found = cheapest_passing(
            knobs, run, target, margin, slower_than=best.seconds if best else None
        )
        if found is not None and (best is None or found.seconds < best.seconds):
            best = found
    chosen = best or max(tried, key=lambda m: m.recall)
    used_margin = chosen.spread if margin is None else margin
    report = {
        "params": chosen.params.to_dict(),
        "recall_at_k": chosen.recall,
        "recall_spread": chosen.spread,
        "margin": used_margin,
        "k": k,
        "target": target,
        "reached": best is not None,
        "queries": len(queries),
        "ms_per_query_batched": 1e3 * chosen.seconds,
        "sweep": [m.row() for m in tried],
    }
    if best is None:
        logger.warning(
            "recall target %.2f not reached; best %.3f with %s",
            target,
            chosen.recall,
            chosen.params,
        )
    shard.params = chosen.params
    report["depths"] = tune_depths(shard, queries, truth, k=k, target=target + used_margin, own=own)
    shard.tune_report = {key: value for key, value in report.items() if key != "sweep"}
    return report


def tune_depths(
    shard: Shard,
    queries: np.ndarray,
    truth: np.ndarray,
    *,
    k: int,
    target: float,
    own: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """The smallest nprobe / efSearch reaching `target` recall@d at each depth d of
    DEPTHS that `truth` is deep enough for, from the tuned one up. A filter keeping
    a fraction s of the vectors needs about what depth k/s needs (100k IVF1024, a random
    5% filter at nprobe 80/160/320: filtered recall@10 0.800/0.875/0.940, unfiltered
    recall@200 0.812/0.883/0.948), so `Shard.scaled_params` reads this table. A
    compressed shard's entries also hold the re-rank candidates a filter keeping k/d
    needs there (`tune_candidates`)."""
    spec, tuned = shard.spec, shard.params
    if spec.kind == "hnsw":
        knob, steps = "ef_search", [2**i for i in range(4, 20) if 2**i <= EF_SEARCH_MAX]
    elif spec.nlist:
        knob, steps = "nprobe", [p for p in (2**i for i in range(20)) if p <= spec.nlist]
    else:
        return {}
    extra = 1 if own is not None else 0
    current = int(getattr(tuned, knob) or 1)
    candidates = tuned.rerank_k
    table: dict[str, dict[str, float]] = {}
    for depth in (d for d in DEPTHS if d > k):
        if truth.shape[1] < depth + extra or shard.n_vectors < 2 * depth:
            break
        chosen: tuple[int, float] | None = None
        for value in [current] + [s for s in steps if s > current]:
            if knob == "ef_search" and value < depth:
                continue  # a graph search keeps at most efSearch candidates
            params = replace(tuned, **{knob: value})
            if tuned.rerank_k is not None:
                # the lists' coverage, not the codes' order: a filter keeping 2% of 100k
                # OPQ32,IVF1024,PQ32 reached recall@10 0.90 / 0.98 / 0.998 at nprobe 338 /
                # 676 / 1024 with 2500 candidates, while recall@100 measured with 5
                # candidates a result (as tuned) plateaued at 0.86 by nprobe 128, too few
                # lists (the candidates each depth needs are tuned next: `tune_candidates`)
                params = replace(params, rerank_k=RERANK_K_MAX)
            recall = measure(
                shard,
                queries[:DEPTH_QUERIES],
                truth[:DEPTH_QUERIES],
                params,
                depth,
                None if own is None else own[:DEPTH_QUERIES],
            ).recall
            if chosen is not None and recall < chosen[1] + DEPTH_PLATEAU_GAIN:
                break  # a plateau: the cheaper setting recalls as much
            chosen = (value, recall)
            if recall >= target:
                break
        if chosen is None:
            break
        table[str(depth)] = {knob: chosen[0], "recall": chosen[1]}
        current = chosen[0]
        if tuned.rerank_k is not None:  # from the shallower depth's count up, as the knob
            at_depth = replace(tuned, **{knob: chosen[0]}, rerank_k=candidates)
            candidates, recall = tune_candidates(
                shard, queries, truth, at_depth, k=k, depth=depth, target=target, own=own
            )
            table[str(depth)].update(rerank_k=candidates, filtered_recall=recall)
    return table


def tune_candidates(
    shard: Shard,
    queries: np.ndarray,
    truth: np.ndarray,
    params: SearchParams,
    *,
    k: int,
    depth: int,
    target: float,
    own: np.ndarray | None = None,
) -> tuple[int, float]:
    """The fewest re-rank candidates (`params`' count, doubled up to RERANK_K_MAX) with
    which a compressed shard finds the k best matches of a random filter keeping k / depth
    of its vectors at `target` recall, probing as `params` do; and that recall. Doubling
    stops on a plateau at the cheaper count: past some count the lists probed, not the
    candidates, bound the recall. The filter's exact top k are its members among each
    query's exact neighbours (`truth`, image ids, best first), as deep as `truth` goes; a
    query's own id counts in neither."""
    ids = shard.ids()
    allowed = ids[np.random.default_rng(depth).random(len(ids)) < k / depth]
    selection = shard.selection_of(allowed)
    member = np.isin(truth, allowed)
    if own is not None:
        member &= truth != own[:, None]
    expected = [row[keep][:k] for row, keep in zip(truth, member, strict=True)]
    n_expected = max(1, sum(len(e) for e in expected))
    chosen: tuple[int, float] | None = None
    candidates = int(params.rerank_k or k)
    while True:
        asked = replace(params, rerank_k=candidates)
        _, found = shard.search_images(queries, k + (own is not None), asked, selection)
        hits = sum(np.intersect1d(f, e).size for f, e in zip(found, expected, strict=True))
        recall = hits / n_expected
        if chosen is not None and recall < chosen[1] + DEPTH_PLATEAU_GAIN:
            return chosen
        chosen = (candidates, recall)
        if recall >= target or candidates >= RERANK_K_MAX:
            return chosen
        candidates = min(RERANK_K_MAX, 2 * candidates)
