"""Small synthetic data for index tests (tiny shards: fast on two cores)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from workers.index.synthetic import normalise
from workers.index.types import VectorAttrs

DIM = 16


@pytest.fixture(autouse=True)
def one_faiss_thread() -> None:
    faiss.omp_set_num_threads(1)


def random_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return normalise(np.random.default_rng(seed).standard_normal((n, dim)))


def attrs_for(ids: np.ndarray, images_per_product: int = 1) -> VectorAttrs:
    """Deterministic attributes: category = id % 100 (so one category is 1%)."""
    ids = np.asarray(ids, dtype=np.int64)
    return VectorAttrs.build(
        ids // images_per_product, ids % 100, (ids % 50).astype(np.float32), ids % 3 != 0
    )


def brute_force(
    vectors: dict[int, np.ndarray],
    products: dict[int, int],
    queries: np.ndarray,
    k: int,
    allowed: set[int] | None = None,
) -> list[list[tuple[int, float]]]:
    """Per query: [(product id, best score)] for the top-k products, by numpy."""
    ids = np.array(sorted(i for i in vectors if allowed is None or i in allowed), dtype=np.int64)
    out: list[list[tuple[int, float]]] = []
    if len(ids) == 0:
        return [[] for _ in queries]
    mat = np.stack([vectors[int(i)] for i in ids])
    scores = queries @ mat.T
    for row in scores:
        best: dict[int, float] = {}
        for pos in np.argsort(-row):
            pid = products[int(ids[pos])]
            if pid not in best:
                best[pid] = float(row[pos])
            if len(best) == k:
                break
        out.append(sorted(best.items(), key=lambda item: -item[1]))
    return out
