"""Merging per-shard answers (wire form) into one global top-k, with the index's merge."""

from __future__ import annotations

import numpy as np

from workers.index.metrics import merge_results
from workers.index.types import SearchResult
from workers.rpc.protocol import SearchHits


def merge_topk(parts: list[SearchHits], k: int) -> SearchResult:
    """The k best of the shards' hits per query, best first, padded with id -1 / score -inf.

    No per-product dedupe is needed: a product lives in exactly one shard.
    """
    if not parts:
        raise ValueError("nothing to merge")
    if len(parts) == 1 and _already_merged(parts[0], k):
        only = parts[0]
        return SearchResult(only.product_ids, only.image_ids, only.scores)
    return merge_results(
        [SearchResult(p.product_ids, p.image_ids, p.scores) for p in parts], int(k)
    )


def _already_merged(hits: SearchHits, k: int) -> bool:
    """Whether one shard's answer is already what merging it would give: k columns, scores
    descending, padding (-1 / -inf) exactly where the product is -1. A few checks instead of
    the merge's two dozen array operations, the largest Python cost of a one-shard call;
    anything else (an unsorted or inconsistent hostile reply) goes through the merge."""
    scores, products = hits.scores, hits.product_ids
    if scores.shape[1] != k:
        return False
    padding = products < 0
    return bool(
        (scores[:, :-1] >= scores[:, 1:]).all()
        and (padding == (scores == -np.inf)).all()
        and (hits.image_ids[padding] == -1).all()
    )
