"""Merging per-shard answers (wire form) into one global top-k, with the index's merge."""

from __future__ import annotations

from workers.index.topk import merge_results
from workers.index.types import SearchResult
from workers.rpc.protocol import SearchHits


def merge_shard_hits(parts: list[SearchHits], k: int) -> SearchResult:
    """The k best of the shards' hits per query, best first, padded with id -1 / score -inf.

    No per-product dedupe is needed: a product lives in exactly one shard.
    """
    if not parts:
        raise ValueError("nothing to merge")
    return merge_results(
        [SearchResult(p.product_ids, p.image_ids, p.scores) for p in parts], int(k)
    )
