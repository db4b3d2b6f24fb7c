"""Grouping ranked image hits by product into search results.

A product with several images must appear once, at the rank of its best image. Doing that
row by row in Python costs more than the FAISS search itself for cheap queries, so the
first hit of each product is found with a handful of array operations over a batch, and a
single query (most of the traffic) first tries the usual case: k images of k products.
Hits come as (score, slot) rows; the shard's columns give each slot's product and image.
"""

from __future__ import annotations

import numpy as np

from workers.index.types import SearchResult


def first_hits(products: np.ndarray, valid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the first `k` distinct products of each row, and how many each row has.

    `products` (nq, f) are the product ids of hits ranked best first; `valid` marks real
    hits. Returns `columns` (nq, k) int64 (-1 past a row's count) and `counts` (nq,).
    """
    nq, f = products.shape
    if f == 0:
        return np.full((nq, k), -1, dtype=np.int64), np.zeros(nq, dtype=np.int64)
    if nq == 1:
        chosen = first_hits_of_row(products[0].tolist(), valid[0].tolist(), k)
        columns = np.full((1, k), -1, dtype=np.int64)
        columns[0, : len(chosen)] = chosen
        return columns, np.array([len(chosen)], dtype=np.int64)
    position = np.broadcast_to(np.arange(f), (nq, f))
    # valid hits first, then by product, best rank first within a product
    order = np.lexsort((position, products, ~valid), axis=-1)
    ranked = np.take_along_axis(products, order, axis=1)
    ranked_valid = np.take_along_axis(valid, order, axis=1)
    first_sorted = ranked_valid.copy()
    first_sorted[:, 1:] &= (ranked[:, 1:] != ranked[:, :-1]) | ~ranked_valid[:, :-1]
    first = np.empty_like(first_sorted)
    np.put_along_axis(first, order, first_sorted, axis=1)
    keep = first & (np.cumsum(first, axis=1) <= k)
    counts = keep.sum(axis=1)
    width = min(k, f)
    columns = np.argsort(~keep, axis=1, kind="stable")[:, :width].astype(np.int64)
    columns[np.arange(width)[None, :] >= counts[:, None]] = -1
    if width < k:
        columns = np.pad(columns, ((0, 0), (0, k - width)), constant_values=-1)
    return columns, counts


def first_hits_of_row(products: list[int], valid: list[bool], k: int) -> list[int]:
    """Columns of the first `k` distinct products of one row, in plain Python: a single
    query fetches a few dozen hits, too few for array operations to pay for their calls
    (np.unique alone took longer)."""
    chosen: list[int] = []
    seen: set[int] = set()
    for column, (product, ok) in enumerate(zip(products, valid, strict=True)):
        if ok and product not in seen:
            seen.add(product)
            chosen.append(column)
            if len(chosen) == k:
                break
    return chosen


def padded(nq: int, k: int, meta: dict[str, object]) -> SearchResult:
    """A result with no hits yet: ids -1 and scores -inf everywhere."""
    return SearchResult(
        np.full((nq, k), -1, dtype=np.int64),
        np.full((nq, k), -1, dtype=np.int64),
        np.full((nq, k), -np.inf, dtype=np.float32),
        meta,
    )


def place_hits(
    out: SearchResult,
    rows_of: np.ndarray,
    scores: np.ndarray,
    slots: np.ndarray,
    products: np.ndarray,
    image_ids: np.ndarray,
    k: int,
) -> np.ndarray:
    """Write the first k distinct products of each row of hits into rows `rows_of` of
    `out` (replacing what an earlier round wrote there); how many each row found."""
    done = _place_distinct(out, rows_of, scores, slots, products, image_ids, k)
    if done.all():
        return np.full(len(rows_of), k, dtype=np.int64)
    counts = np.full(len(rows_of), k, dtype=np.int64)
    rest = ~done
    counts[rest] = _place_grouped(
        out, rows_of[rest], scores[rest], slots[rest], products, image_ids, k
    )
    return counts


def _place_distinct(
    out: SearchResult,
    rows_of: np.ndarray,
    scores: np.ndarray,
    slots: np.ndarray,
    products: np.ndarray,
    image_ids: np.ndarray,
    k: int,
) -> np.ndarray:
    """`distinct_top` for a batch: the rows whose k best images are of k different
    products (the usual case) are written in a dozen array calls, a fraction of what
    the general grouping costs; returns which rows it wrote."""
    if slots.shape[1] < k:
        return np.zeros(len(slots), dtype=bool)
    top = slots[:, :k]
    pids = products.take(np.maximum(top, 0))
    ranked = np.sort(pids, axis=1)
    done = (top[:, k - 1] >= 0) & (ranked[:, 1:] != ranked[:, :-1]).all(axis=1)  # misses last
    rows = rows_of[done]
    out.product_ids[rows] = pids[done]
    out.image_ids[rows] = image_ids.take(top[done])
    out.scores[rows] = scores[done, :k]
    return done


def _place_grouped(
    out: SearchResult,
    rows_of: np.ndarray,
    scores: np.ndarray,
    slots: np.ndarray,
    products: np.ndarray,
    image_ids: np.ndarray,
    k: int,
) -> np.ndarray:
    """The general grouping of `place_hits`, for rows whose best images repeat products."""
    valid = slots >= 0
    columns, counts = first_hits(products[np.maximum(slots, 0)], valid, k)
    out.product_ids[rows_of], out.image_ids[rows_of], out.scores[rows_of] = -1, -1, -np.inf
    rows, cols = np.nonzero(columns >= 0)
    hit_columns = columns[rows, cols]
    hit_slots = slots[rows, hit_columns]
    out.product_ids[rows_of[rows], cols] = products[hit_slots]
    out.image_ids[rows_of[rows], cols] = image_ids[hit_slots]
    out.scores[rows_of[rows], cols] = scores[rows, hit_columns]
    return counts


def distinct_top(
    scores: np.ndarray,
    slots: np.ndarray,
    k: int,
    products: np.ndarray,
    image_ids: np.ndarray,
    meta: dict[str, object],
) -> SearchResult | None:
    """The answer of one query whose k best images are of k different products (the usual
    case), in a few array calls; None otherwise. The general grouping costs ~30 us more
    at 1M vectors: after a scan has flushed the CPU caches every call and loop runs
    cold (index_bench 1M IVF4096,Flat, tuned nprobe 8: shard/raw 0.85x -> 0.90x)."""
    if slots.shape[1] < k or slots[0, k - 1] < 0:  # sorted: a miss (-1) comes last
        return None
    top = slots[:, :k]
    pids = products.take(top)
    if len(set(pids[0].tolist())) < k:
        return None
    images = image_ids.take(top)  # columns may be narrower than int64
    return SearchResult(pids.astype(np.int64), images.astype(np.int64), scores[:, :k], meta)


def top_products(
    scores: np.ndarray,
    slots: np.ndarray,
    k: int,
    products: np.ndarray,
    image_ids: np.ndarray,
    meta: dict[str, object],
) -> tuple[SearchResult, int, int]:
    """The first k distinct products of one query's row of hits (scores and slots of shape
    (1, f), best first, misses last as FAISS puts them), how many it found, and how many
    real hits the row holds when fewer than k (the shard then fetches more or searches
    deeper)."""
    distinct = distinct_top(scores, slots, k, products, image_ids, meta)
    if distinct is not None:
        return distinct, k, k
    row = slots[0]
    valid = (row >= 0).tolist()
    chosen = first_hits_of_row(products.take(row, mode="clip").tolist(), valid, k)
    return row_result(scores[0], row, chosen, k, products, image_ids, meta), len(chosen), sum(valid)


def row_result(
    scores: np.ndarray,
    row: np.ndarray,
    chosen: list[int],
    k: int,
    products: np.ndarray,
    image_ids: np.ndarray,
    meta: dict[str, object],
) -> SearchResult:
    """The result of one query from the `chosen` columns of its row of slots (and its
    scores), padded past them."""
    columns = np.array(chosen, dtype=np.intp)
    hits = row.take(columns)
    return SearchResult(
        _result_row(products.take(hits), k, -1, np.int64),
        _result_row(image_ids.take(hits), k, -1, np.int64),
        _result_row(scores.take(columns), k, -np.inf, np.float32),
        meta,
    )


def _result_row(values: np.ndarray, k: int, fill: float, dtype: type) -> np.ndarray:
    """A (1, k) result row: `values`, then `fill` if fewer than k were found."""
    if len(values) == k:
        return values.astype(dtype).reshape(1, k)
    row: np.ndarray = np.full((1, k), fill, dtype=dtype)
    row[0, : len(values)] = values
    return row
