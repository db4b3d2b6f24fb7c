"""The Redis cache of query embeddings, keyed by the hash of the query's content.

A repeated text or image query skips the encoder (tens of milliseconds of CLIP on a CPU).
Keys carry the model name, so vectors of different models never mix.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import redis

from workers.observability.metrics import QUERY_CACHE

log = logging.getLogger(__name__)

KEY_PREFIX = "search:qemb:"

# One round trip for the lookup and its hit/miss counter.
_GET_AND_COUNT = """
local value = redis.call('GET', KEYS[1])
if value then redis.call('INCR', KEYS[2]) else redis.call('INCR', KEYS[3]) end
return value
"""


def vector_from_bytes(raw: object, max_dim: int) -> np.ndarray | None:
    """A finite float32 vector of 1..max_dim values from little-endian bytes read back from
    Redis, or None for anything else."""
    if not isinstance(raw, bytes) or not 0 < len(raw) <= 4 * max_dim or len(raw) % 4:
        return None
    vector = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    return vector if np.isfinite(vector).all() else None


class QueryEmbeddingCache:
    """get/put float32 query vectors; `hits` and `misses` count this process's lookups
    (also exported to Prometheus), the Redis counters `stats_keys` count every process's."""

    def __init__(
        self, client: redis.Redis, model: str, ttl_s: int = 86400, *, max_dim: int = 4096
    ) -> None:
        if not model:
            raise ValueError("model must be a non-empty name")
        self.client = client
        self.model = model
        self.ttl_s = int(ttl_s)
        self.max_dim = max_dim
        self.hits = 0
        self.misses = 0
        self.stats_keys = (f"{KEY_PREFIX}{model}:stats:hits", f"{KEY_PREFIX}{model}:stats:misses")
        self._get_and_count = client.register_script(_GET_AND_COUNT)

    def key(self, kind: str, content: str | bytes) -> str:
        """search:qemb:<model>:<kind>:<sha256 of the content>"""
        if kind not in ("text", "image"):
            raise ValueError(f"unknown query kind {kind!r}")
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        return f"{KEY_PREFIX}{self.model}:{kind}:{hashlib.sha256(data).hexdigest()}"

    def get(self, kind: str, content: str | bytes) -> np.ndarray | None:
        """The cached vector, or None; raises redis errors (the caller maps them)."""
        key = self.key(kind, content)
        raw = self._get_and_count(keys=[key, *self.stats_keys])
        if raw is None:
            self._miss()
            return None
        vector = vector_from_bytes(raw, self.max_dim)
        if vector is None:
            self._miss()
            log.warning("query cache: dropping a corrupt entry %s", key)
            self.client.delete(key)
            return None
        self.hits += 1
        QUERY_CACHE.labels("hit").inc()
        return vector

    def _miss(self) -> None:
        self.misses += 1
        QUERY_CACHE.labels("miss").inc()

    def put(self, kind: str, content: str | bytes, vector: np.ndarray) -> None:
        vec = np.ascontiguousarray(vector, dtype="<f4").reshape(-1)
        if not 0 < vec.shape[0] <= self.max_dim or not np.isfinite(vec).all():
            raise ValueError("refusing to cache an empty, oversized or non-finite vector")
        self.client.set(self.key(kind, content), vec.tobytes(), ex=self.ttl_s)
