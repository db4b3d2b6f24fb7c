"""Tasks of the `shard.<n>` queues, run by that shard's search worker on its live replica.

Send them with `.apply_async(args=[n], queue=shard_queue(n))`. With several replicas of
a shard, one replica takes each task.
"""

from __future__ import annotations

from celery import shared_task

from workers.serving.bootsteps import running_shards


class ShardNotServedHere(RuntimeError):
    """This worker does not serve the shard (or has not finished loading it)."""


def _replica(shard: int):
    service = running_shards.get(int(shard))
    replica = getattr(service, "replica", None)
    if replica is None or replica.shard is None:
        raise ShardNotServedHere(f"shard {shard} is not loaded in this worker")
    return replica


@shared_task(name="workers.tasks.shards.shard_stats", soft_time_limit=30)
def shard_stats(shard: int) -> dict[str, object]:
    """Counts, index spec, log position, update lag and snapshot age of the live replica.

    Read-only.
    """
    from workers.observability.shard_gauges import measure

    replica = _replica(shard)
    stats = dict(replica.shard.stats())
    stats.update(measure(replica))
    stats.update(shard=int(shard), replica=replica.name, last_applied=replica.last_applied)
    return stats


@shared_task(name="workers.tasks.shards.shard_snapshot", soft_time_limit=600)
def shard_snapshot(shard: int) -> str:
    """Publish a snapshot at the last applied log entry to the artifact store; its URI, or
    "" when the store already holds this position or another replica is publishing."""
    artifact = _replica(shard).publish_snapshot()
    return artifact.uri if artifact else ""


@shared_task(name="workers.tasks.shards.shard_compact", soft_time_limit=600)
def shard_compact(shard: int) -> dict[str, object]:
    """Fold the delta into the bulk index and drop removed ids. Idempotent."""
    replica = _replica(shard)
    replica.shard.compact()
    return dict(replica.shard.stats())


@shared_task(name="workers.tasks.shards.shard_ids", soft_time_limit=120)
def shard_ids(shard: int, key: str, ttl_s: int = 600) -> int:
    """Write the live image ids (raw int64) of whichever replica takes the task to Redis
    `key` (tests, and the id-only baseline of bench/reconcile_bench.py; reconcile asks
    every replica with the reconcile_digest broadcast instead, workers/serving/control.py).

    Ids can be many millions: they travel as one binary value, not as a JSON result.
    """
    import numpy as np

    from catalog.redis_clients import redis_client

    ids = np.ascontiguousarray(_replica(shard).shard.ids(), dtype="<i8")
    redis_client().set(key, ids.tobytes(), ex=ttl_s)
    return int(ids.size)
