"""Auto-tuning: the cheapest search parameters that reach a recall target on held-out queries.

Recall is measured at the image level against exact neighbours; a held-out query that is
itself in the index is excluded from both lists, so it cannot inflate the figure.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from workers.index.shard import Shard
from workers.index.spec import SearchParams

logger = logging.getLogger(__name__)

RERANK_STEPS = (25, 50, 100, 200, 400, 800, 1600, 3200)
PLATEAU_GAIN = 0.001  # recall gained by doubling nprobe below which a group stops
EF_STEPS = (16, 32, 64, 128, 256, 512, 1024)


def recall_excluding(found: np.ndarray, truth: np.ndarray, own: np.ndarray | None, k: int) -> float:
    """recall@k where each query's own id (if given) is removed from both lists first."""
    hits = 0
    for row, (f, t) in enumerate(zip(found, truth, strict=True)):
        if own is not None:
            f, t = f[f != own[row]], t[t != own[row]]
        hits += np.intersect1d(f[:k][f[:k] >= 0], t[:k]).size
    return hits / float(len(found) * k)


def measure(
    shard: Shard,
    queries: np.ndarray,
    truth: np.ndarray,
    params: SearchParams,
    k: int = 10,
    own: np.ndarray | None = None,
) -> tuple[float, float]:
    """(recall@k, seconds per query, batched) for one parameter setting."""
    extra = 1 if own is not None else 0
    start = time.perf_counter()
    _, found = shard.search_images(queries, k + extra, params)
    elapsed = (time.perf_counter() - start) / len(queries)
    return recall_excluding(found, truth, own, k), elapsed


def candidate_grid(shard: Shard) -> list[list[SearchParams]]:
    """Groups of settings, each ordered from cheapest to most expensive."""
    spec = shard.spec
    nlist = spec.nlist
    if spec.kind == "hnsw":
        return [[SearchParams(ef_search=ef) for ef in EF_STEPS]]
    if nlist:
        probes = [p for p in (2**i for i in range(20)) if p <= nlist]
        if spec.rerank:
            return [[SearchParams(nprobe=p, rerank_k=r) for p in probes] for r in RERANK_STEPS]
        return [[SearchParams(nprobe=p) for p in probes]]
    if spec.rerank:
        return [[SearchParams(rerank_k=r) for r in RERANK_STEPS]]
    return [[SearchParams()]]


def autotune(
    shard: Shard,
    queries: np.ndarray,
    truth: np.ndarray,
    *,
    k: int = 10,
    target: float = 0.95,
    own: np.ndarray | None = None,
    margin: float = 0.01,
) -> dict[str, object]:
    """Pick the fastest setting reaching `target` (+ `margin` for sampling noise on a few
    hundred queries); store it and the measured recall on the shard."""
    sweep = []
    best: tuple[float, SearchParams, float] | None = None  # (seconds, params, recall)
    fallback: tuple[float, SearchParams, float] | None = None
    for group in candidate_grid(shard):
        previous = -1.0
        for params in group:
            recall, seconds = measure(shard, queries, truth, params, k, own)
            sweep.append({**params.to_dict(), "recall": recall, "ms_per_query": 1e3 * seconds})
            if fallback is None or recall > fallback[2]:
                fallback = (seconds, params, recall)
            if recall >= target + margin:
                if best is None or seconds < best[0]:
                    best = (seconds, params, recall)
                break  # the rest of this group only costs more
            if best is not None and seconds > best[0]:
                break  # already slower than a setting that reaches the target
            if recall < previous + PLATEAU_GAIN:
                break  # plateau: more probes will not help this candidate count
            previous = recall
    chosen = best or fallback
    assert chosen is not None
    seconds, params, recall = chosen
    report = {
        "params": params.to_dict(),
        "recall_at_k": recall,
        "k": k,
        "target": target,
        "reached": best is not None,
        "queries": len(queries),
        "ms_per_query_batched": 1e3 * seconds,
        "sweep": sweep,
    }
    if best is None:
        logger.warning("recall target %.2f not reached; best %.3f with %s", target, recall, params)
    shard.params = params
    shard.tune_report = {key: value for key, value in report.items() if key != "sweep"}
    return report
