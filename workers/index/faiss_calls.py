"""The FAISS calls a shard's search makes, below the Python wrapper.

A single query spends a few microseconds in the wrapper's checks and allocations, a tenth of
a cheap IVF search; the shard checks its queries once and calls the C++ entry points here.
"""

from __future__ import annotations

import faiss
import numpy as np

from workers.index.spec import IndexSpec

METRIC = faiss.METRIC_INNER_PRODUCT


def new_index(spec: IndexSpec, dim: int) -> faiss.Index:
    return faiss.index_factory(dim, spec.factory, METRIC)


def search_with(
    index: faiss.Index, x: np.ndarray, k: int, params: faiss.SearchParameters | None
) -> tuple[np.ndarray, np.ndarray]:
    """``index.search`` minus the Python wrapper's checks (`x` is checked C-contiguous
    float32 of the index's dimension): a few microseconds of a single query."""
    n = len(x)
    scores = np.empty((n, k), dtype=np.float32)
    labels = np.empty((n, k), dtype=np.int64)
    index.search_c(n, faiss.swig_ptr(x), k, faiss.swig_ptr(scores), faiss.swig_ptr(labels), params)
    return scores, labels


def refine_params(
    base: faiss.SearchParameters, candidates: int, fetch: int
) -> faiss.IndexRefineSearchParameters:
    """Re-rank the best `candidates` by code of a bulk searched with `base` (not owned)."""
    # FAISS takes int(fetch * k_factor) candidates, in float32: half a candidate of margin
    refine = faiss.IndexRefineSearchParameters(k_factor=(candidates + 0.5) / fetch)
    refine.base_index_params = base
    return refine


def merged(
    parts: list[tuple[np.ndarray, np.ndarray]], nq: int, fetch: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best `fetch` (score, label) per query over the parts searched; past the hits,
    label -1 with a score of -inf or FAISS's lowest float."""
    if not parts:
        return np.full((nq, 1), -np.inf, np.float32), np.full((nq, 1), -1, np.int64)
    if len(parts) == 1:  # one index searched: FAISS (or the re-rank) already sorted it
        return parts[0]
    scores = np.concatenate([p[0] for p in parts], axis=1)
    labels = np.concatenate([p[1] for p in parts], axis=1)
    scores[labels < 0] = -np.inf  # a miss's score may be FAISS's lowest float
    if nq == 1:  # (take_along_axis costs a single query ~8 us of index building)
        order = np.argsort(-scores[0], kind="stable")[:fetch]
        return scores[:, order], labels[:, order]
    order = np.argsort(-scores, axis=1, kind="stable")[:, :fetch]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(labels, order, 1)
