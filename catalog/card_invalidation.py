"""Forgetting cached product cards and vectors (see `catalog.product_cache`) after writes.

Kept apart from the cache itself so the models can call it from their querysets without
an import cycle.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

import redis
from django.db import transaction

from catalog.redis_clients import redis_client

log = logging.getLogger(__name__)

CARD_PREFIX = "catalog:card:"
VECTOR_PREFIX = "catalog:pvec:"
# A random token replaced after every forget: a web process's own copies of cards
# (`product_cache.cards`) are good while the token they were read under is current. Random,
# not a counter: a Redis restart that loses it must not bring an old value back.
CARDS_EPOCH_KEY = "catalog:cards-epoch"
_DELETE_CHUNK = 10_000


def forget(product_ids: Iterable[int]) -> None:
    """Drop the cached cards and vectors of these products, now and once the transaction
    commits (a search between the two could cache the old rows again), and replace the
    cards' epoch token after each drop."""
    keys = [p + str(int(pid)) for pid in set(product_ids) for p in (CARD_PREFIX, VECTOR_PREFIX)]
    if not keys:
        return
    _delete(keys)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: _delete(keys))


def _delete(keys: list[str]) -> None:
    try:
        pipe = redis_client().pipeline(transaction=False)
        for start in range(0, len(keys), _DELETE_CHUNK):
            pipe.delete(*keys[start : start + _DELETE_CHUNK])
        pipe.set(CARDS_EPOCH_KEY, os.urandom(8).hex())  # after the deletes, on one connection
        pipe.execute()
    except redis.RedisError as exc:  # a write must not fail for the cache; the TTL bounds it
        log.warning("product cache: could not forget %d keys: %s", len(keys), exc)
