"""Celery worker bootsteps that run the serving loops beside the task consumer.

A worker consuming `shard.<n>` serves shard n's searches; a worker consuming
`encode` serves query encoding. Both stop cleanly on a warm shutdown.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from celery import bootsteps
from django.conf import settings

from workers.queues import Queue

if TYPE_CHECKING:
    from workers.serving.encoder_service import EncoderService
    from workers.serving.shard_service import ShardService

logger = logging.getLogger(__name__)
SHARD_QUEUE = re.compile(r"^shard\.(\d+)$")

# The services running in this worker process, by shard number (read by shard tasks).
running_shards: dict[int, ShardService] = {}


def request_build(shard: int) -> None:
    """Queue a rebuild of `shard` from the embedding table, once per few minutes at most:
    every replica of a shard that no artifact covers asks for the same one."""
    from catalog.redis_clients import redis_client
    from workers.index.build_pointer import build_requested_key
    from workers.tasks.maintenance import build_index

    if redis_client().set(build_requested_key(shard), 1, nx=True, ex=300):
        build_index.apply_async(args=[int(shard)], queue=Queue.INDEX.value)
        logger.warning("shard %d: no artifact covers the log; queued a rebuild", shard)


def _queues(worker) -> set[str]:
    return set(worker.app.amqp.queues.consume_from or {})


class ShardServing(bootsteps.StartStopStep):
    """Load, follow and serve every shard whose queue this worker consumes."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs) -> None:
        super().__init__(worker, **kwargs)
        self.services: list[ShardService] = []

    def start(self, worker) -> None:
        from workers.serving.shard_service import ShardService, ShardServiceConfig

        for queue in sorted(_queues(worker)):
            match = SHARD_QUEUE.match(queue)
            if not match:
                continue
            shard = int(match.group(1))
            service = ShardService(
                ShardServiceConfig(
                    redis_url=settings.REDIS_URL,
                    shard=shard,
                    index_dir=settings.INDEX_DIR,
                    store_url=settings.INDEX_STORE_URL,
                    spec=settings.INDEX_SPEC,
                    batch_cap=settings.SEARCH_BATCH_CAP,
                    heartbeat_s=settings.REPLICA_HEARTBEAT_S,
                    member_ttl_s=settings.REPLICA_TTL_S,
                    host=settings.REPLICA_HOST,
                    keep_snapshots=settings.INDEX_STORE_KEEP_SNAPSHOTS,
                    store_grace_s=settings.INDEX_STORE_GRACE_S,
                    worker=settings.WORKER_CONFIG,
                ),
                request_build=request_build,
            )
            service.start()
            running_shards[shard] = service
            self.services.append(service)
            logger.info("shard %d: serving loop started", shard)

    def stop(self, worker) -> None:
        for service in self.services:
            service.stop()
            running_shards.pop(service.config.shard, None)
        self.services.clear()


class EncoderServing(bootsteps.StartStopStep):
    """Answer text and image query encoding over the RPC from an encode worker."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs) -> None:
        super().__init__(worker, **kwargs)
        self.service: EncoderService | None = None

    def start(self, worker) -> None:
        if Queue.ENCODE.value not in _queues(worker):
            return
        from workers.serving.encoder_service import EncoderService
        from workers.tasks.encoding import encoder

        self.service = EncoderService(settings.REDIS_URL, encoder(), config=settings.WORKER_CONFIG)
        self.service.start()
        logger.info("query encoder serving on the RPC")

    def stop(self, worker) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None
