"""Tasks of the `encode` queue: catalog images -> CLIP vectors -> shard update logs.

Thin: each takes ids, gets the process's encoder, and calls catalog.services.indexing.
"""

from __future__ import annotations

import logging

import redis
from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from catalog.services import indexing
from workers.encoding.process import process_encoder
from workers.index.log import NotReplicated
from workers.queues import Queue

logger = logging.getLogger(__name__)
RETRY = {"max_retries": 5, "retry_backoff": 5, "retry_backoff_max": 300, "retry_jitter": True}
# Nobody waits for these results: not storing them also keeps the sender from subscribing
# to a result channel, which during a Redis outage would block a save for ~20 s and fail it.
FIRE_AND_FORGET = {"ignore_result": True}
# Redis away (a restart, a failover) or an update log append short of its replicas.
REDIS_RETRIED = (redis.ConnectionError, redis.TimeoutError, NotReplicated)


def encoder():
    return process_encoder(
        settings.CLIP_MODEL,
        str(settings.CLIP_FALLBACK_DIR),
        batch_size=settings.ENCODE_BATCH_SIZE,
        bf16=settings.CLIP_BF16,
        compile=settings.CLIP_COMPILE,
    )


@worker_ready.connect
def _load_model_at_start(sender, **kwargs) -> None:
    """Workers of the encode queue load CLIP before taking their first task."""
    queues = sender.app.amqp.queues.consume_from or {}
    if Queue.ENCODE.value in queues:
        model = encoder()
        logger.info("encode worker ready with %s (dim %d)", model.model_name, model.dim)


@shared_task(
    name="workers.tasks.encoding.encode_products",
    **FIRE_AND_FORGET,
    autoretry_for=(indexing.TransientEncodeError, *REDIS_RETRIED),
    **RETRY,
)
def encode_products(product_ids: list[int]) -> dict[str, int]:
    """Encode the products' images (and other pending ones) and publish them. Idempotent."""
    return indexing.encode_products([int(i) for i in product_ids], encoder=encoder()).as_dict()


@shared_task(
    name="workers.tasks.encoding.remove_products",
    **FIRE_AND_FORGET,
    autoretry_for=REDIS_RETRIED,
    **RETRY,
)
def remove_products(product_ids: list[int]) -> dict[str, int]:
    """Take inactive products' images out of their shards. Idempotent."""
    return indexing.remove_products([int(i) for i in product_ids])


@shared_task(
    name="workers.tasks.encoding.remove_images",
    **FIRE_AND_FORGET,
    autoretry_for=REDIS_RETRIED,
    **RETRY,
)
def remove_images(product_id: int, image_ids: list[int]) -> dict[str, int]:
    """Take deleted images out of their product's shard. Idempotent."""
    return indexing.remove_images(int(product_id), [int(i) for i in image_ids])


@shared_task(
    name="workers.tasks.encoding.encode_stale",
    queue=Queue.DEFAULT.value,  # not behind the encode backlog
    soft_time_limit=60,
    **FIRE_AND_FORGET,
)
def encode_stale(older_than_s: float | None = None) -> int:
    """Re-send products whose encode task died (lease lapsed) or never went out.

    Periodic (beat, every few seconds). Idempotent: encoding reuses stored vectors, so
    the rare product sent twice costs one repeated publish, never a wrong index.
    `older_than_s`: how long a product may stay `pending` (ENCODE_PENDING_AFTER_S).
    """
    from catalog.services.encode_leases import products_resend_stuck

    pending_after_s = settings.ENCODE_PENDING_AFTER_S if older_than_s is None else older_than_s
    return products_resend_stuck(pending_after_s=float(pending_after_s)).resent
