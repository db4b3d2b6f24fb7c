"""Merging per-shard top-k lists into one global top-k (pure numpy, no I/O)."""

from __future__ import annotations

import numpy as np

from workers.index.types import SearchResult
from workers.rpc.protocol import SearchHits


def merge_topk(parts: list[SearchHits], k: int) -> SearchResult:
    """The k best of the shards' hits per query, best first, padded with id -1 / score -inf.

    Scores are inner products (higher is better), as every shard returns them. No
    per-product dedupe is needed: a product lives in exactly one shard. Ties keep shard
    order, so the result is deterministic.
    """
    if not parts:
        raise ValueError("nothing to merge")
    first = parts[0]
    if len(parts) == 1 and first.scores.shape[1] == k and _sorted_rows(first.scores):
        return SearchResult(  # one shard, already in order: nothing to merge
            product_ids=first.product_ids, image_ids=first.image_ids, scores=first.scores
        )
    nq = first.scores.shape[0]
    if any(p.scores.shape[0] != nq for p in parts):
        raise ValueError("shards answered different numbers of queries")
    scores = np.concatenate([p.scores for p in parts], axis=1).astype(np.float32, copy=False)
    product_ids = np.concatenate([p.product_ids for p in parts], axis=1).astype(np.int64)
    image_ids = np.concatenate([p.image_ids for p in parts], axis=1).astype(np.int64)
    if scores.shape[1] < k:
        pad = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        product_ids = np.pad(product_ids, ((0, 0), (0, pad)), constant_values=-1)
        image_ids = np.pad(image_ids, ((0, 0), (0, pad)), constant_values=-1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return SearchResult(
        product_ids=np.ascontiguousarray(np.take_along_axis(product_ids, order, axis=1)),
        image_ids=np.ascontiguousarray(np.take_along_axis(image_ids, order, axis=1)),
        scores=np.ascontiguousarray(np.take_along_axis(scores, order, axis=1)),
    )


def _sorted_rows(scores: np.ndarray) -> bool:
    return bool((scores[:, :-1] >= scores[:, 1:]).all())
