"""The shard side of search RPC: a batch handler that makes one search call per (k, filter).

Requests popped together that share k and filters are stacked into one query matrix and
searched in one call (FAISS amortises the scan over the batch), then split back per request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from workers.index.types import SearchFilter, SearchResult
from workers.rpc.protocol import (
    ERROR_BAD_REQUEST,
    Reply,
    Request,
    SearchHits,
    SearchQuery,
)
from workers.rpc.server import Handler

log = logging.getLogger(__name__)

SearchFn = Callable[[np.ndarray, int, SearchFilter], SearchResult]

SHARD_QUEUE_PREFIX = "search:rpc:shard:"


def shard_queue_key(shard: int) -> str:
    """The request list that every replica of `shard` pops from."""
    return f"{SHARD_QUEUE_PREFIX}{int(shard)}"


def make_search_handler(search_fn: SearchFn, *, shard: int, dim: int | None = None) -> Handler:
    """A batch handler for `RpcServer` answering from `search_fn(queries (n, d), k, filters)`.

    `dim`, when given, refuses queries of another width with a bad-request reply instead
    of letting them reach the index.
    """

    def handle(requests: list[Request]) -> list[Reply]:
        replies: list[Reply | None] = [None] * len(requests)
        groups: dict[tuple[int, SearchFilter, int], list[int]] = {}
        for i, request in enumerate(requests):
            query = request.payload
            if not isinstance(query, SearchQuery):
                replies[i] = Reply.failure(
                    request.id,
                    f"a search shard does not serve {request.kind!r}",
                    kind=ERROR_BAD_REQUEST,
                    shard=shard,
                )
            elif dim is not None and query.queries.shape[1] != dim:
                replies[i] = Reply.failure(
                    request.id,
                    f"queries have {query.queries.shape[1]} dimensions, not {dim}",
                    kind=ERROR_BAD_REQUEST,
                    shard=shard,
                )
            else:
                groups.setdefault((query.k, query.filters, query.queries.shape[1]), []).append(i)
        for (k, filters, _), members in groups.items():
            _answer_group(search_fn, shard, requests, members, k, filters, replies)
        return [reply for reply in replies if reply is not None]

    return handle


def _answer_group(
    search_fn: SearchFn,
    shard: int,
    requests: list[Request],
    members: list[int],
    k: int,
    filters: SearchFilter,
    replies: list[Reply | None],
) -> None:
    blocks = [requests[i].payload.queries for i in members]  # type: ignore[union-attr]
    queries = np.ascontiguousarray(blocks[0] if len(blocks) == 1 else np.vstack(blocks), np.float32)
    try:
        result = search_fn(queries, k, filters)
        expected = (queries.shape[0], k)
        for name in ("product_ids", "image_ids", "scores"):
            shape = np.shape(getattr(result, name))
            if shape != expected:
                raise ValueError(f"search returned {name} of shape {shape}, expected {expected}")
    except Exception as exc:
        # A failing group gets error replies; the other groups of the batch are still served.
        log.exception(
            "search shard %d: search of %d queries failed (traces %s)",
            shard,
            len(queries),
            [requests[i].trace_id for i in members],
        )
        for i in members:
            replies[i] = Reply.failure(requests[i].id, f"search failed: {exc}", shard=shard)
        return
    row = 0
    for i, block in zip(members, blocks, strict=True):
        rows = slice(row, row + block.shape[0])
        row += block.shape[0]
        hits = SearchHits(
            product_ids=result.product_ids[rows],
            image_ids=result.image_ids[rows],
            scores=result.scores[rows],
        )
        replies[i] = Reply(id=requests[i].id, payload=hits, shard=shard)
