"""Grouping ranked image hits by product, for a whole batch of queries at once.

A product with several images must appear once, at the rank of its best image. Doing that
row by row in Python costs more than the FAISS search itself for cheap queries, so the
first hit of each product is found with a handful of array operations over the batch.
"""

from __future__ import annotations

import numpy as np


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
