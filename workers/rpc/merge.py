"""Merging per-shard answers (wire form) into one global top-k."""

from __future__ import annotations

import numpy as np

from workers.index.types import SearchResult
from workers.rpc.protocol import SearchHits

_WORST = np.float32(-np.inf)


def merge_shard_hits(parts: list[SearchHits], k: int) -> SearchResult:
    """The k best of the shards' hits per query, best first, padded with id -1 / score -inf.

    No per-product dedupe is needed: a product lives in exactly one shard. A hit without a
    product (id < 0) never wins, whatever score a reply gave it. Ties keep the shards'
    order. A dozen whole-array steps, whatever the number of shards and queries: this
    runs on every search of the web process.
    """
    if not parts:
        raise ValueError("nothing to merge")
    k = int(k)
    products = np.concatenate([p.product_ids for p in parts], axis=1, dtype=np.int64)
    images = np.concatenate([p.image_ids for p in parts], axis=1, dtype=np.int64)
    scores = np.concatenate([p.scores for p in parts], axis=1, dtype=np.float32)
    scores[products < 0] = _WORST  # a copy of its own: concatenate made it
    nq, width = scores.shape
    if width < k:
        pad = ((0, 0), (0, k - width))
        products = np.pad(products, pad, constant_values=-1)
        images = np.pad(images, pad, constant_values=-1)
        scores = np.pad(scores, pad, constant_values=_WORST)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    rows = np.arange(nq)[:, None]
    top, products, images = scores[rows, order], products[rows, order], images[rows, order]
    found = top > _WORST
    return SearchResult(
        product_ids=np.where(found, products, -1),
        image_ids=np.where(found, images, -1),
        scores=top,
    )
