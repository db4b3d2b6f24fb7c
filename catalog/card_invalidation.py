"""Forgetting cached product cards and vectors (see `catalog.product_cache`) after writes.

Kept apart from the cache itself so the models can call it from their querysets without
an import cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis
from django.db import transaction

from catalog.redis_clients import redis_client

log = logging.getLogger(__name__)

CARD_PREFIX = "catalog:card:"
VECTOR_PREFIX = "catalog:pvec:"
_DELETE_CHUNK = 10_000


def forget(product_ids: Iterable[int]) -> None:
    """Drop the cached cards and vectors of these products, now and once the transaction
    commits (a search between the two could cache the old rows again)."""
    keys = [p + str(int(pid)) for pid in set(product_ids) for p in (CARD_PREFIX, VECTOR_PREFIX)]
    if not keys:
        return
    _delete(keys)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: _delete(keys))


def _delete(keys: list[str]) -> None:
    try:
        client = redis_client()
        for start in range(0, len(keys), _DELETE_CHUNK):
            client.delete(*keys[start : start + _DELETE_CHUNK])
    except redis.RedisError as exc:  # a write must not fail for the cache; the TTL bounds it
        log.warning("product cache: could not forget %d keys: %s", len(keys), exc)
