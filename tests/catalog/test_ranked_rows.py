"""The order of a merged vector answer as the API pages it: best first, equal scores by
product id, whichever shard or slot each came from."""

from __future__ import annotations

import numpy as np

from catalog.search import ranked_rows
from workers.index.types import SearchResult


def result(products: list[int], scores: list[float]) -> SearchResult:
    ids = np.array([products], dtype=np.int64)
    return SearchResult(
        product_ids=ids,
        image_ids=ids * 10,
        scores=np.array([scores], dtype=np.float32),
    )


def test_equal_scores_in_product_id_order_whatever_the_shards_order():
    # Products 7, 3 and 5 share a picture; the shards happened to list them 7, 3, 5.
    got = ranked_rows(result([9, 7, 3, 5, 2], [0.9, 0.5, 0.5, 0.5, 0.1]), k=10)
    assert [pid for pid, _, _ in got] == [9, 3, 5, 7, 2]
    assert [iid for _, _, iid in got] == [90, 30, 50, 70, 20]
    swapped = ranked_rows(result([9, 5, 7, 3, 2], [0.9, 0.5, 0.5, 0.5, 0.1]), k=10)
    assert swapped == got


def test_padding_and_the_excluded_product_are_dropped_then_k_kept():
    got = ranked_rows(
        result([4, 8, -1, 6, -1], [0.8, 0.7, -np.inf, 0.6, -np.inf]), k=2, exclude_product=8
    )
    assert got == [(4, np.float32(0.8).item(), 40), (6, np.float32(0.6).item(), 60)]
