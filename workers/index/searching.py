"""How a shard answers a search from one state: the filter's bitmap, the knobs scaled to
the depth asked, the backend's hits grouped by product, and more rounds for the queries
whose hits hold fewer than k products (fetch more images where products repeat, visit
every match where the search missed some)."""

from __future__ import annotations

import numpy as np

from workers.index.backends.base import Hits
from workers.index.grouping import padded, place_hits, top_products
from workers.index.selection import SUBSET_COST
from workers.index.spec import IndexSpec, SearchParams
from workers.index.state import ShardState
from workers.index.types import SearchFilter, SearchResult


def search(
    state: ShardState,
    spec: IndexSpec,
    queries: np.ndarray,
    k: int,
    filters: SearchFilter | None,
    params: SearchParams | None,
) -> SearchResult:
    """Top-k products per query (best image each) of unit `queries`."""
    nq = len(queries)
    bits, n_match, slots = state.selection(filters)
    if n_match == 0:
        return padded(nq, k, {"matches": 0})
    base = state.params if params is None else params.merged_over(state.params)
    if filters is not None and not filters.is_empty:
        base = scaled(state, spec, base, k, n_match / state.live_count)
    elif k > state.depths.k:
        base = scaled(state, spec, base, k)
    backend = state.backend
    exhaustive = backend.starts_exhaustive(bits, n_match, base)
    subset = None
    if slots is not None:
        visited = backend.gather_cost(base, exhaustive)
        if visited is not None and SUBSET_COST * n_match <= visited:
            subset = slots  # scoring the few matches alone beats the search
    exhaustive = exhaustive or subset is not None  # every match scored: no retry
    rounds = _one_query if nq == 1 else _batch
    return rounds(state, spec, queries, k, bits, n_match, base, exhaustive, subset)


def scaled(
    state: ShardState, spec: IndexSpec, params: SearchParams, k: int, kept: float = 1.0
) -> SearchParams:
    """The knobs a search for `k` results runs with under a filter keeping a fraction
    `kept` of the vectors (see `depth.py`)."""
    return state.depths.scaled(params, k, kept, spec.nlist)


def slots_of(
    state: ShardState,
    spec: IndexSpec,
    queries: np.ndarray,
    fetch: int,
    bits: np.ndarray | None,
    params: SearchParams,
    exhaustive: bool = False,
    subset: np.ndarray | None = None,
) -> Hits:
    """Top `fetch` (score, slot) through the bitmap if any; `exhaustive`: visit every
    match; `subset`: the matching slots, whose rows are scored alone."""
    if subset is not None:
        return state.backend.score_subset(queries, fetch, bits, subset)
    if exhaustive:
        params = widened(spec, params)
    return state.backend.search(queries, fetch, bits, params, exhaustive)


def widened(spec: IndexSpec, params: SearchParams) -> SearchParams:
    """Knobs that visit every match: every list, a deep graph search."""
    return SearchParams(
        nprobe=spec.nlist or params.nprobe,
        ef_search=max(4 * (params.ef_search or 64), 1024) if params.ef_search else None,
        rerank_k=params.rerank_k,
    )


def _batch(
    state: ShardState,
    spec: IndexSpec,
    queries: np.ndarray,
    k: int,
    bits: np.ndarray | None,
    n_match: int,
    params: SearchParams,
    exhaustive: bool,
    subset: np.ndarray | None,
) -> SearchResult:
    """Rounds over the queries still short of k products."""
    out = padded(len(queries), k, {"matches": n_match})
    products, image_ids = state.cols.data["product_ids"], state.cols.data["image_ids"]
    todo = np.arange(len(queries))
    fetch = min(n_match, 2 * k)
    while len(todo):
        scores, slots = slots_of(
            state, spec, queries[todo], fetch, bits, params, exhaustive, subset
        )
        counts = place_hits(out, todo, scores, slots, products, image_ids, k)
        short = counts < k
        if not short.any():
            break
        # several images per product: fetch more images; else the search missed matches
        grow = short & ((slots >= 0).sum(axis=1) >= fetch) & (fetch < n_match)
        deepen = short & ~grow & (not exhaustive)
        if not (grow.any() or deepen.any()):
            break
        todo = todo[grow | deepen]
        if grow.any():
            fetch = min(n_match, fetch * 4)
        if deepen.any():
            exhaustive = True
    return out


def _one_query(
    state: ShardState,
    spec: IndexSpec,
    query: np.ndarray,
    k: int,
    bits: np.ndarray | None,
    n_match: int,
    params: SearchParams,
    exhaustive: bool,
    subset: np.ndarray | None,
) -> SearchResult:
    """The same rounds for one query (most of the traffic), grouped with the one-row
    shortcut, where a batch's array operations would cost more than a cheap search."""
    products, image_ids = state.cols.data["product_ids"], state.cols.data["image_ids"]
    meta: dict[str, object] = {"matches": n_match}
    fetch = min(n_match, 2 * k)
    while True:
        hits = slots_of(state, spec, query, fetch, bits, params, exhaustive, subset)
        result, found, valid = top_products(*hits, k, products, image_ids, meta)
        if found == k:
            return result
        if valid >= fetch and fetch < n_match:
            fetch = min(n_match, fetch * 4)  # several images per product: fetch more
        elif not exhaustive:
            exhaustive = True  # the search missed matches: probe everything
        else:
            return result
