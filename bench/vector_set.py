"""The catalog the pgvector and shard-count benches search: 384-d anisotropic clusters.

No real embeddings can be fetched here, so the rows come from the index engine's cluster
model (workers/index/synthetic.py: elongated clusters of modest intrinsic dimension plus
noise, normalised float32; 1,000 clusters of skewed sizes, so a small catalog spreads a
query's neighbours over several clusters and a large one keeps them in its own), at 384
dimensions, the size of small sentence-embedding models. Row r is product r + 1 with one
image (image id = product id). Tuning and evaluation queries are fresh draws from the same
clusters, never in the catalog; their truth is the exact inner-product top k.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.index.synthetic import ClusterModel, exact_knn
from workers.index.types import VectorAttrs

DIM = 384
MODEL = "bench-synthetic-384"
CLUSTERS = 1000


@dataclass(frozen=True)
class VectorSet:
    ids: np.ndarray  # (n,) int64 product ids, 1..n
    vectors: np.ndarray  # (n, DIM) float32, unit norm
    tune_queries: np.ndarray  # held out: what pgvector's ef_search is tuned on
    tune_truth: np.ndarray  # their exact top-k product ids
    queries: np.ndarray  # held out: what every path is measured on
    truth: np.ndarray

    def attrs(self, rows: np.ndarray | slice = slice(None)) -> VectorAttrs:
        ids = self.ids[rows]
        return VectorAttrs.build(ids, ids % 20 + 1, ids % 500 + 0.99, ids % 4 != 0)

    def save_queries(self, path: Path) -> Path:
        np.save(path, self.queries)
        return path


def make(n: int, n_queries: int, k: int = 10, seed: int = 0) -> VectorSet:
    """`n` catalog rows and two sets of `n_queries` held-out queries with exact truth."""
    model = ClusterModel.make(DIM, CLUSTERS, seed=1234)
    vectors = model.sample(n, np.random.default_rng(seed))
    ids = np.arange(1, n + 1, dtype=np.int64)
    tune = model.sample(n_queries, np.random.default_rng(seed + 1))
    queries = model.sample(n_queries, np.random.default_rng(seed + 2))
    return VectorSet(
        ids=ids,
        vectors=vectors,
        tune_queries=tune,
        tune_truth=ids[exact_knn(vectors, tune, k)[1]],
        queries=queries,
        truth=ids[exact_knn(vectors, queries, k)[1]],
    )


def recall(found: list[np.ndarray] | np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """recall@k of `found` (product ids per query, best first) against `truth`."""
    hits = sum(np.intersect1d(f[:k], t[:k]).size for f, t in zip(found, truth, strict=True))
    return hits / (k * len(truth))
