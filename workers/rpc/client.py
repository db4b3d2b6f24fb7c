"""The caller side of the RPC: fan a request out, gather replies until the deadline.

`SearchClient` asks every shard and merges whatever answered in time (a missing shard
makes the answer partial, not failed); `EncodeClient` asks the encode workers for one
query vector, with the Redis query-embedding cache in front. Both raise `RpcUnavailable`
when Redis itself cannot be reached, within the client's connect/socket timeouts (build
the Redis client with `workers.rpc.connection.connect`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import redis

from workers.config import RpcConfig
from workers.index.membership import ready_shards
from workers.index.types import SearchFilter, SearchResult
from workers.observability.metrics import (
    SEARCH_PARTIAL,
    SEARCH_QUERIES,
    SHARD_MISSED,
    SHARD_REPLY_SECONDS,
)
from workers.rpc.cache import QueryEmbeddingCache
from workers.rpc.coalesce import Coalescer
from workers.rpc.encode import ENCODE_QUEUE_KEY
from workers.rpc.errors import (
    BadRequest,
    NoShardAvailable,
    NoWorkerAvailable,
    RemoteError,
    RpcUnavailable,
)
from workers.rpc.merge import merge_shard_hits
from workers.rpc.protocol import (
    DEFAULT_LIMITS,
    ERROR_BAD_REQUEST,
    Embedding,
    ImageQuery,
    ProtocolLimits,
    RequestPayload,
    SearchHits,
    SearchQuery,
    TextQuery,
)
from workers.rpc.search import shard_queue_key
from workers.rpc.transport import Transport

log = logging.getLogger(__name__)

# bound once: a label lookup takes a lock and a dict probe on every search
_OUTCOMES = {outcome: SEARCH_QUERIES.labels(outcome) for outcome in ("full", "partial", "failed")}


# ---------------------------------------------------------------- search


@dataclass(frozen=True, slots=True)
class GatheredResult:
    """The merged top-k of the shards that answered in time, and which ones did."""

    result: SearchResult
    answered: list[int]
    total: int
    errors: dict[int, str] = field(default_factory=dict)
    took_ms: float = 0.0

    @property
    def partial(self) -> bool:
        return len(self.answered) < self.total


class ServedShards:
    """Which shards have a live, ready replica, read from their heartbeats at most once per
    `refresh_s`: a shard nobody serves is answered as missing at once, not after the
    deadline. When Redis cannot say, every shard is tried (the deadline still holds)."""

    def __init__(self, client: redis.Redis, n_shards: int, refresh_s: float = 1.0) -> None:
        self.client = client
        self.n_shards = n_shards
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._known: frozenset[int] = frozenset(range(n_shards))
        self._until = 0.0

    def shards(self) -> frozenset[int]:
        now = time.monotonic()
        if now < self._until:
            return self._known
        with self._lock:
            if now >= self._until:
                try:
                    self._known = frozenset(ready_shards(self.client, self.n_shards))
                except redis.RedisError as exc:
                    log.warning("rpc: cannot read which shards are served: %s", exc)
                    self._known = frozenset(range(self.n_shards))
                self._until = now + self.refresh_s
        return self._known


class SearchClient:
    """Searches all shards over Redis; thread-safe (each call borrows a pooled connection)."""

    def __init__(
        self,
        client: redis.Redis,
        n_shards: int,
        *,
        timeout_s: float = RpcConfig.search_timeout_s,
        limits: ProtocolLimits = DEFAULT_LIMITS,
        max_queue_len: int = 4096,
        queue_ttl_s: int = 60,
        served: ServedShards | None = None,
        in_flight: int = 2,
    ) -> None:
        """`served`: which shards have a ready replica; without it every shard is asked.
        `in_flight`: how many requests this client has out at once; concurrent searches
        beyond that wait and then travel together as one request (workers/rpc/coalesce.py);
        0 sends every search on its own."""
        if n_shards < 1:
            raise ValueError("n_shards must be at least 1")
        self.n_shards = n_shards
        self.timeout_s = timeout_s
        self.limits = limits
        self.queue_keys = [shard_queue_key(s) for s in range(n_shards)]
        self._reply_seconds = [SHARD_REPLY_SECONDS.labels(str(s)) for s in range(n_shards)]
        self._transport = Transport(client, limits, max_queue_len, queue_ttl_s)
        self._served = served
        self._coalescer: Coalescer[GatheredResult] | None = (
            Coalescer(in_flight, max_rows=limits.max_queries, max_trace_chars=limits.max_id_chars)
            if in_flight > 0
            else None
        )

    def search(
        self,
        queries: np.ndarray,
        k: int,
        filters: SearchFilter | None = None,
        timeout_s: float | None = None,
        *,
        trace_id: str = "",
    ) -> GatheredResult:
        """Top-k over all shards for each query row; raises NoShardAvailable if none answers."""
        started = time.monotonic()
        q = self._check_queries(queries, k)
        k = int(k)
        timeout = timeout_s if timeout_s is not None else self.timeout_s
        filters = filters or SearchFilter()

        def run(rows: np.ndarray, left_s: float, trace: str, calls: int) -> GatheredResult:
            return self._search(rows, k, filters, left_s, trace, calls)

        if self._coalescer is None:
            gathered = run(q, timeout, trace_id, 1)
            result, errors = gathered.result, gathered.errors
        else:
            key = (k, filters, q.shape[1], timeout)
            gathered, mine = self._coalescer.call(key, q, timeout, trace_id, run)
            result, errors = gathered.result, gathered.errors
            if mine != slice(0, result.scores.shape[0]):  # one of several members
                result, errors = _rows(result, mine), dict(errors)
        took_ms = (time.monotonic() - started) * 1e3
        return GatheredResult(result, gathered.answered, gathered.total, errors, took_ms)

    def _search(
        self,
        q: np.ndarray,
        k: int,
        filters: SearchFilter,
        timeout: float,
        trace_id: str,
        calls: int,
    ) -> GatheredResult:
        """One request for `calls` searches' rows (several when coalesced); the outcome
        counters count searches, the shard counters requests."""
        payload = SearchQuery(queries=q, k=k, filters=filters)
        served = self._served.shards() if self._served else frozenset(range(self.n_shards))
        if not served:
            _OUTCOMES["failed"].inc(calls)
            raise NoShardAvailable("no search shard has a live, ready replica")
        keys = [self.queue_keys[s] for s in sorted(served)]
        try:
            replies = self._transport.call_timed(keys, payload, timeout, trace_id)
        except RpcUnavailable:
            _OUTCOMES["failed"].inc(calls)
            raise
        hits: dict[int, SearchHits] = {}
        errors: dict[int, str] = {}
        bad_requests = 0
        for reply, seconds in replies:
            shard = reply.shard
            if shard is None or not 0 <= shard < self.n_shards or shard in hits:
                continue
            self._reply_seconds[shard].observe(seconds)
            if not reply.ok:
                errors[shard] = reply.error or ""
                bad_requests += reply.error_kind == ERROR_BAD_REQUEST
            elif isinstance(reply.payload, SearchHits) and reply.payload.scores.shape == (
                q.shape[0],
                k,
            ):
                hits[shard] = reply.payload
            else:
                errors[shard] = "reply of the wrong shape or type"
        self._count(hits, errors, calls)
        if not hits:
            if errors and bad_requests == len(errors):
                raise BadRequest("; ".join(sorted(set(errors.values()))))
            raise NoShardAvailable(
                f"no search shard answered within {timeout * 1e3:.0f} ms"
                + (f" (errors: {errors})" if errors else "")
            )
        answered = sorted(hits)
        for shard in range(self.n_shards):
            if shard not in served:
                errors[shard] = "no live, ready replica"
        return GatheredResult(
            result=merge_shard_hits([hits[s] for s in answered], int(k)),
            answered=answered,
            total=self.n_shards,
            errors=errors,
        )

    def _count(self, hits: dict[int, SearchHits], errors: dict[int, str], calls: int) -> None:
        for shard in range(self.n_shards):
            if shard not in hits:
                SHARD_MISSED.labels(str(shard), "error" if shard in errors else "timeout").inc()
        if not hits:
            _OUTCOMES["failed"].inc(calls)
        elif len(hits) < self.n_shards:
            _OUTCOMES["partial"].inc(calls)
            SEARCH_PARTIAL.inc(calls)
        else:
            _OUTCOMES["full"].inc(calls)

    def _check_queries(self, queries: np.ndarray, k: int) -> np.ndarray:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q.reshape(1, -1)
        limits = self.limits
        if q.ndim != 2 or not 1 <= q.shape[0] <= limits.max_queries:
            raise ValueError(f"queries must be (n, d) with 1 <= n <= {limits.max_queries}")
        if not 1 <= q.shape[1] <= limits.max_dim:
            raise ValueError(f"query dimension must be in [1, {limits.max_dim}]")
        if not np.isfinite(q).all():
            raise ValueError("queries contain NaN or infinity")
        if isinstance(k, bool) or not 1 <= int(k) <= limits.max_k:
            raise ValueError(f"k must be in [1, {limits.max_k}]")
        return q


def _rows(result: SearchResult, rows: slice) -> SearchResult:
    return SearchResult(
        product_ids=result.product_ids[rows],
        image_ids=result.image_ids[rows],
        scores=result.scores[rows],
    )


# ---------------------------------------------------------------- encode


class EncodeClient:
    """Turns a text or an image query into a vector via the encode workers, cache first."""

    def __init__(
        self,
        client: redis.Redis,
        queue_key: str = ENCODE_QUEUE_KEY,
        *,
        cache: QueryEmbeddingCache | None = None,
        timeout_s: float = RpcConfig.encode_timeout_s,
        limits: ProtocolLimits = DEFAULT_LIMITS,
        max_queue_len: int = 1024,
        queue_ttl_s: int = 60,
    ) -> None:
        self.queue_key = queue_key
        self.cache = cache
        self.timeout_s = timeout_s
        self.limits = limits
        self._transport = Transport(client, limits, max_queue_len, queue_ttl_s)

    def encode_text(
        self, text: str, timeout_s: float | None = None, *, trace_id: str = ""
    ) -> np.ndarray:
        """The query vector of `text` (float32, (dim,)); BadRequest if a worker refuses it."""
        if not isinstance(text, str) or not text or len(text) > self.limits.max_text_chars:
            raise ValueError(f"text must be 1 to {self.limits.max_text_chars} characters")
        return self._encode("text", text, TextQuery(text=text), timeout_s, trace_id)

    def encode_image(
        self, data: bytes, timeout_s: float | None = None, *, trace_id: str = ""
    ) -> np.ndarray:
        """The query vector of an image file's bytes; BadRequest names why it is unreadable."""
        data = bytes(data)
        if not data or len(data) > self.limits.max_image_bytes:
            raise ValueError(
                f"image must be 1 to {self.limits.max_image_bytes} bytes (IMAGE_MAX_BYTES)"
            )
        return self._encode("image", data, ImageQuery(data=data), timeout_s, trace_id)

    def _encode(
        self,
        kind: str,
        content: str | bytes,
        payload: RequestPayload,
        timeout_s: float | None,
        trace_id: str,
    ) -> np.ndarray:
        if self.cache is not None:
            try:
                cached = self.cache.get(kind, content)
            except redis.RedisError as exc:
                raise RpcUnavailable(f"query cache unreachable: {exc}") from exc
            if cached is not None:
                return cached
        timeout = timeout_s if timeout_s is not None else self.timeout_s
        replies = self._transport.call([self.queue_key], payload, timeout, trace_id)
        if not replies:
            raise NoWorkerAvailable(f"no encode worker answered within {timeout * 1e3:.0f} ms")
        reply = replies[0]
        if not reply.ok:
            error = BadRequest if reply.error_kind == ERROR_BAD_REQUEST else RemoteError
            raise error(reply.error or "encode failed")
        if not isinstance(reply.payload, Embedding):
            raise RemoteError("encode worker replied without a vector")
        vector = reply.payload.vector
        if self.cache is not None:
            if reply.payload.model == self.cache.model:
                try:
                    self.cache.put(kind, content, vector)
                except redis.RedisError as exc:
                    log.warning("rpc: could not cache a query vector: %s", exc)
            else:
                log.warning(
                    "rpc: encoder model %r is not the cache's %r; not caching",
                    reply.payload.model,
                    self.cache.model,
                )
        return vector
