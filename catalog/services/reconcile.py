"""Reconciliation: make each shard hold exactly the database's active embeddings.

Missing ids are published again (their products re-run the idempotent encode task,
which reuses stored vectors); extra ids get delete entries in the shard's log.
Updates in flight while this runs can only cause harmless repeats.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from catalog.models import Embedding
from catalog.redis_clients import redis_client
from catalog.services.enqueue import enqueue_encoding
from catalog.services.indexing import append_deletes
from workers.encoding.registry import published_model
from workers.index.log import shard_for_product
from workers.queues import shard_queue


@dataclass(frozen=True)
class ShardDiff:
    shard: int
    live: int
    expected: int
    missing: int
    extra: int


def expected_ids(model: str, dim: int) -> dict[int, dict[int, int]]:
    """{shard: {image id: product id}} of every active product's stored vector."""
    found: dict[int, dict[int, int]] = {n: {} for n in range(settings.SEARCH_SHARDS)}
    rows = Embedding.objects.filter(
        model=model, dim=dim, image__product__is_active=True
    ).values_list("image_id", "image__product_id")
    for image_id, product_id in rows.iterator(chunk_size=10_000):
        found[shard_for_product(product_id, settings.SEARCH_SHARDS)][image_id] = product_id
    return found


class ShardDidNotAnswer(TimeoutError):
    """No search worker of the shard wrote its ids in time."""


def live_ids(shard: int, timeout: float = 60.0) -> np.ndarray:
    """Ask the shard's search worker for its live ids.

    The ids come back as one binary Redis value, which is polled for: waiting on the
    Celery result backend instead can miss the answer after a Redis restart.
    """
    from workers.tasks.shards import shard_ids

    key = f"search:reconcile:{shard}:{uuid.uuid4().hex}"
    shard_ids.apply_async(args=[shard, key], queue=shard_queue(shard), expires=timeout)
    client = redis_client()
    deadline = time.monotonic() + timeout
    while (raw := client.get(key)) is None:
        if time.monotonic() > deadline:
            raise ShardDidNotAnswer(f"shard {shard} did not report its ids in {timeout:.0f}s")
        time.sleep(0.05)
    client.delete(key)
    return np.frombuffer(raw, dtype="<i8").astype(np.int64)


def reconcile(*, repair: bool = True, timeout: float = 60.0) -> list[ShardDiff]:
    published = published_model(redis_client())
    if published is None:
        return []
    expected = expected_ids(*published)
    diffs = []
    for shard in range(settings.SEARCH_SHARDS):
        live = live_ids(shard, timeout)
        want = expected[shard]
        want_ids = np.fromiter(want, dtype=np.int64, count=len(want))
        missing = np.setdiff1d(want_ids, live, assume_unique=True)
        extra = np.setdiff1d(live, want_ids, assume_unique=True)
        if repair:
            if missing.size:
                enqueue_encoding({want[int(i)] for i in missing})
            if extra.size:
                append_deletes(shard, extra.tolist())
        diffs.append(
            ShardDiff(shard, int(live.size), len(want), int(missing.size), int(extra.size))
        )
    return diffs
