"""Tasks of the `encode` queue: catalog images -> CLIP vectors -> shard update logs.

Thin: each takes ids, gets the process's encoder, and calls catalog.services.indexing.
"""

from __future__ import annotations

import logging
import random

import redis
from celery import Task, shared_task
from celery.signals import worker_ready
from django.conf import settings

from catalog.services import indexing
from catalog.services.encode_leases import lease_until_retry
from workers.encoding.process import process_encoder
from workers.index.log import NotReplicated
from workers.queues import Queue

logger = logging.getLogger(__name__)
RETRY = {"max_retries": 5, "retry_backoff": 5, "retry_backoff_max": 300, "retry_jitter": True}
# Nobody waits for these results: not storing them also keeps the sender from subscribing
# to a result channel, which during a Redis outage would block a save, then fail it.
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
        limits=settings.WORKER_CONFIG.images,
    )


@worker_ready.connect
def _load_model_at_start(sender, **kwargs) -> None:
    """Workers of the encode queue load CLIP before taking their first task."""
    queues = sender.app.amqp.queues.consume_from or {}
    if Queue.ENCODE.value in queues:
        model = encoder()
        logger.info("encode worker ready with %s (dim %d)", model.model_name, model.dim)


# With the default backoff (2 s doubling to 60 s, jittered) 20 retries span about 12 minutes:
# past MEDIA_MISSING_AFTER_S, so a stored file that never arrives ends as `missing_file`.
# Products still failing after that stay `pending`, and the stale sweep sends them again.
ENCODE_MAX_RETRIES = 20


def retry_countdown(
    retries: int, *, base_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Seconds before retry number `retries` + 1: base_s doubling per retry up to max_s,
    then a random 50-100% of it, so tasks that failed together do not retry together."""
    delay = min(max_s, base_s * 2 ** min(retries, 32))
    return delay * (0.5 + 0.5 * (rng or random).random())


@shared_task(
    bind=True,
    name="workers.tasks.encoding.encode_products",
    max_retries=ENCODE_MAX_RETRIES,
    **FIRE_AND_FORGET,
)
def encode_products(self: Task, product_ids: list[int]) -> dict[str, int]:
    """Encode the products' images (and other pending ones) and publish them. Idempotent.

    Transient failures (an image URL or the media storage not answering, a stored file not
    replicated yet, Redis) are retried with backoff (ENCODE_RETRY_BACKOFF_S doubling up to
    ENCODE_RETRY_BACKOFF_MAX_S); a retry after image failures carries only their products.
    """
    countdown = retry_countdown(
        self.request.retries,
        base_s=settings.ENCODE_RETRY_BACKOFF_S,
        max_s=settings.ENCODE_RETRY_BACKOFF_MAX_S,
    )
    try:
        return indexing.encode_products([int(i) for i in product_ids], encoder=encoder()).as_dict()
    except indexing.TransientEncodeError as exc:
        if self.request.retries < self.max_retries:
            _lease_until_retry(exc.product_ids, countdown)
        raise self.retry(args=[exc.product_ids], exc=exc, countdown=countdown) from None
    except REDIS_RETRIED as exc:
        raise self.retry(exc=exc, countdown=countdown) from None


def _lease_until_retry(product_ids: list[int], countdown: float) -> None:
    """Keep the sweep from sending products again while their retry waits (best effort)."""
    try:
        lease_until_retry(product_ids, countdown_s=countdown)
    except redis.RedisError as exc:  # the retry still comes; the sweep may send a duplicate
        logger.warning("could not lease %d product(s) until their retry: %s", len(product_ids), exc)


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
