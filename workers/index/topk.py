"""Pure helpers on top-k result arrays: the k-way merge of shard answers, and recall@k."""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

from workers.index.types import SearchResult


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean fraction of the true top-k ids found in the first k columns of `found`."""
    found = np.asarray(found)[:, :k]
    truth = np.asarray(truth)[:, :k]
    if found.shape[0] != truth.shape[0]:
        raise ValueError("found and truth must have the same number of queries")
    hits = 0
    for row_found, row_truth in zip(found, truth, strict=True):
        valid = row_truth[row_truth >= 0]
        hits += np.intersect1d(row_found[row_found >= 0], valid).size
    return hits / float(max(1, truth.shape[0] * k))


def keep_max_for(metric: int) -> bool:
    """Whether larger scores are better, as FAISS itself decides it for the metric."""
    return bool(faiss.is_similarity_metric(metric))


def merge_topk(
    scores: Sequence[np.ndarray],
    ids: Sequence[np.ndarray],
    k: int,
    metric: int = faiss.METRIC_INNER_PRODUCT,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard (nq, k_i) answers into one (nq, k) answer, best first.

    Ids of -1 are padding and never win. The direction (max or min) comes from the metric.
    Plain numpy on purpose: FAISS's heap functions open an OpenMP parallel region even for
    one query, and in a web process (threads not pinned to 1) its spinning costs far more
    than a merge of a few dozen numbers.
    """
    if not scores:
        raise ValueError("nothing to merge")
    nq = scores[0].shape[0]
    keep_max = keep_max_for(metric)
    worst = np.float32(-np.inf if keep_max else np.inf)
    for d, i in zip(scores, ids, strict=True):
        if np.shape(d) != np.shape(i) or np.shape(d)[0] != nq:
            raise ValueError("scores and ids must be (nq, k_i) with the same nq")
    all_ids = np.concatenate([np.asarray(i, dtype=np.int64) for i in ids], axis=1)
    all_scores = np.concatenate([np.asarray(d, dtype=np.float32) for d in scores], axis=1)
    all_scores = np.where(all_ids >= 0, all_scores, worst)
    if all_ids.shape[1] < k:
        pad = k - all_ids.shape[1]
        all_ids = np.pad(all_ids, ((0, 0), (0, pad)), constant_values=-1)
        all_scores = np.pad(all_scores, ((0, 0), (0, pad)), constant_values=worst)
    order = np.argsort(-all_scores if keep_max else all_scores, axis=1, kind="stable")[:, :k]
    top_ids = np.take_along_axis(all_ids, order, axis=1)
    top_scores = np.take_along_axis(all_scores, order, axis=1)
    return np.ascontiguousarray(top_scores), np.where(np.isfinite(top_scores), top_ids, -1)


def merge_results(results: Sequence[SearchResult], k: int) -> SearchResult:
    """Merge grouped shard answers (products are disjoint across shards: a score heap does)."""
    if len(results) == 1 and _already_merged(results[0], k):
        return results[0]
    nq = results[0].scores.shape[0]
    offsets = np.cumsum([0] + [r.scores.shape[1] for r in results])
    positions = [
        np.where(r.product_ids >= 0, np.arange(r.scores.shape[1])[None, :] + off, -1)
        for r, off in zip(results, offsets[:-1], strict=True)
    ]
    scores, pos = merge_topk([r.scores for r in results], positions, k)
    all_products = np.concatenate([r.product_ids for r in results], axis=1)
    all_images = np.concatenate([r.image_ids for r in results], axis=1)
    rows = np.arange(nq)[:, None]
    valid = pos >= 0
    safe = np.where(valid, pos, 0)
    return SearchResult(
        product_ids=np.where(valid, all_products[rows, safe], -1).astype(np.int64),
        image_ids=np.where(valid, all_images[rows, safe], -1).astype(np.int64),
        scores=np.where(valid, scores, -np.inf).astype(np.float32),
    )


def _already_merged(result: SearchResult, k: int) -> bool:
    """Whether one answer is already what merging it would give: k columns of the merge's
    dtypes, scores descending, padding (-1 / -inf) exactly where the product is -1. A few
    checks instead of the merge's two dozen array operations, the largest Python cost of a
    one-shard search; anything else (an unsorted or inconsistent hostile reply) goes
    through the merge."""
    scores, products = result.scores, result.product_ids
    if scores.shape[1] != k or scores.dtype != np.float32:
        return False
    if products.dtype != np.int64 or result.image_ids.dtype != np.int64:
        return False
    padding = products < 0
    return bool(
        (scores[:, :-1] >= scores[:, 1:]).all()
        and (padding == (scores == -np.inf)).all()
        and (result.image_ids[padding] == -1).all()
    )
