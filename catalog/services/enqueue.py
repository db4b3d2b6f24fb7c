"""Hand work to the Celery workers once the surrounding transaction has committed.

If the broker is unreachable the rows keep their `pending` state, so the periodic
sweep (`catalog.services.encode_leases`, run by beat) or `manage.py encode --stale`
(`enqueue_stale`) picks them up later: a broker outage delays indexing but never loses a write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from catalog.models import Product

logger = logging.getLogger(__name__)
_batch = threading.local()


def _send(task_name: str, *args: object) -> None:
    from workers.tasks import encoding

    task = getattr(encoding, task_name)
    try:
        task.delay(*args)
    except OperationalError as exc:
        logger.warning("broker unreachable, %s%s left pending: %s", task_name, args, exc)


def _ids(values: Iterable[int]) -> list[int]:
    return sorted({int(v) for v in values})


def enqueue_encoding(product_ids: Iterable[int]) -> None:
    ids = _ids(product_ids)
    pending = getattr(_batch, "ids", None)
    if pending is not None:
        pending.update(ids)
    elif ids:
        transaction.on_commit(lambda: _send("encode_products", ids))


@contextmanager
def batched_encoding(chunk_size: int = 64) -> Iterator[None]:
    """Gather the encoding requests of a bulk write into one task per chunk of products.

    Bulk imports would otherwise queue one task per product; the encode worker
    batches on its own, but fewer, fuller tasks waste less work.
    """
    outer = getattr(_batch, "ids", None)
    if outer is not None:  # nested: the outermost block sends
        yield
        return
    _batch.ids = set()
    try:
        yield
        # Rows whose savepoint rolled back (a rejected import row) are not sent.
        ids = sorted(Product.objects.filter(pk__in=_batch.ids).values_list("pk", flat=True))
    finally:
        del _batch.ids
    for start in range(0, len(ids), chunk_size):
        chunk = ids[start : start + chunk_size]
        transaction.on_commit(lambda chunk=chunk: _send("encode_products", chunk))


def enqueue_stale(*, older_than_s: float = 300.0, chunk_size: int = 64) -> int:
    """Send encode tasks again for active products still pending or encoding after a while.

    Their task was never sent (broker outage) or died with its worker; encoding is
    idempotent, so a merely slow task costs a repeat, not a wrong index.
    """
    from catalog.models import IndexState

    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    ids = list(
        Product.objects.filter(
            is_active=True,
            index_state__in=[IndexState.PENDING, IndexState.ENCODING],
            updated_at__lte=cutoff,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for start in range(0, len(ids), chunk_size):
        _send("encode_products", ids[start : start + chunk_size])
    if ids:
        logger.info("re-enqueued %d stale product(s) for encoding", len(ids))
    return len(ids)


def enqueue_removal(product_ids: Iterable[int]) -> None:
    ids = _ids(product_ids)
    if ids:
        transaction.on_commit(lambda: _send("remove_products", ids))


def enqueue_image_removal(*, product_id: int, image_ids: Iterable[int]) -> None:
    ids = _ids(image_ids)
    if ids:
        transaction.on_commit(lambda: _send("remove_images", int(product_id), ids))
