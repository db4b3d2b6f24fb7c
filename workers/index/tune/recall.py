"""The recall a tuner aims at: what the merged answer of all shards gets from this shard.

A catalog of n shards places products by hash (`log.shard_for_product`), so the number M
of a query's global top k that live on one shard is about Binomial(k, 1/n), and they are
that shard's own top M. The shard's local rank-j neighbour is in the merged top k exactly
when M >= j: a hit there counts P(M >= j), out of sum_j P(M >= j) = k / n. Tuning the
whole local top k instead would pay for deep local neighbours the merge drops. With one
shard every weight is 1: plain recall@k.

Recall is measured at the image level against exact neighbours; a held-out query that is
itself in the index is excluded from both lists, so it cannot inflate the figure.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import numpy as np

from workers.index.shard import Shard
from workers.index.spec import SearchParams


@functools.cache
def merged_rank_weights(k: int, n_shards: int = 1) -> np.ndarray:
    """P(M >= j) for local ranks j = 1..k, M ~ Binomial(k, 1 / n_shards): how likely the
    shard's rank-j neighbour is in the merged top k (read-only; float64)."""
    if k < 1 or n_shards < 1:
        raise ValueError("k and n_shards must be at least 1")
    if n_shards == 1:
        weights = np.ones(k, dtype=np.float64)
    else:
        p = 1.0 / n_shards
        m = np.arange(k + 1, dtype=np.float64)
        log_factorial = np.array([math.lgamma(i + 1) for i in range(k + 1)], dtype=np.float64)
        log_choose = log_factorial[k] - log_factorial - log_factorial[::-1]
        pmf = np.exp(log_choose + m * math.log(p) + (k - m) * math.log1p(-p))
        weights = np.cumsum(pmf[::-1])[::-1][1:]  # P(M >= j), j = 1..k
    weights.setflags(write=False)
    return weights


def query_hits(
    found: np.ndarray, truth: np.ndarray, own: np.ndarray | None, k: int, n_shards: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(weighted true neighbours found, weighted true neighbours there are) per query, at
    k, each true neighbour weighted by its rank (`merged_rank_weights`), each query's own
    id (if given) removed from both lists first. A shard with fewer than k vectors has
    fewer true neighbours (-1 pads `truth`): recall is over those, or it could never reach 1."""
    weights = merged_rank_weights(k, n_shards)
    hits = np.zeros(len(found), dtype=np.float64)
    expected = np.zeros(len(found), dtype=np.float64)
    for row, (f, t) in enumerate(zip(found, truth, strict=True)):
        if own is not None:
            f, t = f[f != own[row]], t[t != own[row]]
        f, t = f[:k], t[:k]
        real = t >= 0
        w = weights[: len(t)]
        hits[row] = w[real & np.isin(t, f[f >= 0])].sum()
        expected[row] = w[real].sum()
    return hits, expected


def recall_excluding(
    found: np.ndarray, truth: np.ndarray, own: np.ndarray | None, k: int, n_shards: int = 1
) -> float:
    """recall@k over all queries (see `query_hits`)."""
    hits, expected = query_hits(found, truth, own, k, n_shards)
    total = float(expected.sum())
    return float(hits.sum()) / total if total else 1.0


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
    """One setting on the held-out queries: recall@k (as the merged answer sees it), its
    standard error, batched time."""

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
    n_shards: int = 1,
) -> Measured:
    """Recall@k, its spread and seconds per query (batched) of one parameter setting, for
    a shard of `n_shards` (see the module's docstring)."""
    extra = 1 if own is not None else 0
    start = time.perf_counter()
    _, found = shard.search_images(queries, k + extra, params)
    elapsed = (time.perf_counter() - start) / len(queries)
    hits, expected = query_hits(found, truth, own, k, n_shards)
    total = float(expected.sum())
    recall = float(hits.sum()) / total if total else 1.0
    return Measured(params, recall, recall_spread(hits, expected), elapsed)
