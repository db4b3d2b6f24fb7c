"""Reciprocal rank fusion: one ranking out of several, by rank alone.

The lexical (BM25 / ts_rank) and the CLIP cosine scores live on scales that cannot be
compared, so each list only contributes 1 / (RRF_K + rank) per product (Cormack et al.,
2009). RRF_K = 60 is the constant of that paper: it damps the head of each list enough
that a product ranked well by both beats one ranked first by one list alone.
"""

from __future__ import annotations

from collections.abc import Sequence

RRF_K = 60


def fuse(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """(product id, relevance) best first, relevance scaled to (0, 1]: 1 is a product
    ranked first by every list. Ties go to the smaller id, so the order is stable."""
    if not rankings:
        return []
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, product_id in enumerate(ranking, start=1):
            fused[product_id] = fused.get(product_id, 0.0) + 1.0 / (k + rank)
    best = len(rankings) / (k + 1)
    ordered = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
    return [(product_id, score / best) for product_id, score in ordered]
