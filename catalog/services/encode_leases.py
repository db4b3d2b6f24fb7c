"""Leases of encode tasks, and the sweep that re-sends the work of tasks that died.

A task that encodes products holds one Redis key per product (`encode:lease:<id>`,
TTL `ENCODE_LEASE_TTL_S`) for as long as it works, renewed by a heartbeat thread, and
takes it before it marks them `encoding`. A worker killed with SIGKILL renews nothing:
its leases lapse within the TTL, and the sweep (beat, every `ENCODE_STALE_EVERY_S`)
sends its products again, long before the broker's visibility timeout would hand the
unacknowledged task back. A batch that is slow but alive keeps its leases and is left
alone. Encoding is idempotent, so the rare duplicate this allows costs a repeat only.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType

import redis
from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone

from catalog.models import IndexState, Product, index_state_change
from catalog.redis_clients import redis_client

logger = logging.getLogger(__name__)
LEASE_PREFIX = "encode:lease:"
# Delete the keys that still hold this task's token (another task may have renewed one).
_RELEASE = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then n = n + redis.call('DEL', key) end
end
return n
"""


def lease_key(product_id: int) -> str:
    return f"{LEASE_PREFIX}{int(product_id)}"


class EncodeLease:
    """Context manager: the products' lease keys live, renewed, until the block ends."""

    def __init__(
        self, product_ids: Iterable[int], *, ttl_s: float, client: redis.Redis | None = None
    ) -> None:
        self.keys = [lease_key(i) for i in sorted({int(i) for i in product_ids})]
        self.ttl_ms = max(1000, int(ttl_s * 1000))
        self.token = uuid.uuid4().hex
        self.client = client or redis_client()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def renew(self) -> None:
        if not self.keys:
            return
        with self.client.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.set(key, self.token, px=self.ttl_ms)
            pipe.execute()

    def _heartbeat(self) -> None:
        # Four renewals per TTL: a late one or two (a busy CPU, a Redis blip) keep the lease.
        while not self._stop.wait(self.ttl_ms / 4000):
            try:
                self.renew()
            except redis.RedisError as exc:
                logger.warning("could not renew %d encode lease(s): %s", len(self.keys), exc)

    def __enter__(self) -> EncodeLease:
        self.renew()
        self._thread = threading.Thread(target=self._heartbeat, name="encode-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self.keys:
            return
        try:
            self.client.eval(_RELEASE, len(self.keys), *self.keys, self.token)
        except redis.RedisError as exc:  # they lapse by themselves within the TTL
            logger.warning("could not release %d encode lease(s): %s", len(self.keys), exc)


def encode_lease(product_ids: Iterable[int]) -> EncodeLease:
    """The lease an encode task holds over its batch (TTL from settings)."""
    return EncodeLease(product_ids, ttl_s=settings.ENCODE_LEASE_TTL_S)


def lease_until_retry(
    product_ids: Iterable[int], *, countdown_s: float, client: redis.Redis | None = None
) -> None:
    """Hold the leases of products a task will retry until the retry is due (plus a TTL).

    They are `pending` meanwhile, and the retry waits in the worker, not in the queue: the
    sweep would send them again, once per sweep for as long as the retries last. A worker
    that dies meanwhile lets the leases lapse, and the sweep takes the products over.
    """
    ids = sorted({int(i) for i in product_ids})
    if not ids:
        return
    ttl_ms = max(1000, int((countdown_s + settings.ENCODE_LEASE_TTL_S) * 1000))
    with (client or redis_client()).pipeline(transaction=False) as pipe:
        for product_id in ids:
            pipe.set(lease_key(product_id), "retry", px=ttl_ms)
        pipe.execute()


def leased(product_ids: list[int], client: redis.Redis | None = None) -> set[int]:
    """Which of these products a live task holds a lease on (one MGET)."""
    if not product_ids:
        return set()
    values = (client or redis_client()).mget([lease_key(i) for i in product_ids])
    return {pid for pid, value in zip(product_ids, values, strict=True) if value is not None}


def encode_queue_length() -> int:
    """Encode tasks waiting in the broker (all priority lists of the queue)."""
    from searchsite.celery import app
    from workers.queues import Queue

    with app.connection_for_read() as connection:
        try:
            declared = connection.default_channel.queue_declare(Queue.ENCODE.value, passive=True)
        except connection.channel_errors:  # Redis: an empty queue has no list to find
            return 0
    return int(declared.message_count)


@dataclass
class StuckProducts:
    """Active products not indexed yet, as the sweep sees them."""

    encoding: int = 0  # in `encoding`, leased or not
    unleased: list[int] = field(default_factory=list)  # `encoding` with no live task
    unleased_age_s: float = 0.0  # the longest wait since its last save, of those
    pending: int = 0  # `pending` for over pending_after_s
    pending_ids: list[int] = field(default_factory=list)  # all of them, or a sample if queued
    pending_age_s: float = 0.0
    retrying: list[int] = field(default_factory=list)  # of those, left to a scheduled retry
    queued_tasks: int = 0  # encode tasks waiting in the broker
    resent: int = 0  # products sent again (0 on a dry run)

    @property
    def pending_resendable(self) -> bool:
        """Pending products are sent again only while no encode task waits: a queued task
        holds them or will take them into its batch, and a backlog must not be multiplied."""
        return self.queued_tasks == 0


PENDING_SAMPLE = 20  # ids listed while a backlog is queued (a big import can hold millions)


def products_stuck(*, pending_after_s: float) -> StuckProducts:
    """Find products left `encoding` by a dead task, and `pending` ones left for too long.

    Cheap enough to run every few seconds: two queries on the indexed state column,
    one MGET, one LLEN per priority of the encode queue.
    """
    now = timezone.now()
    active = Product.objects.filter(is_active=True)
    encoding = dict(active.filter(index_state=IndexState.ENCODING).values_list("pk", "updated_at"))
    unleased = sorted(set(encoding) - leased(sorted(encoding)))
    oldest = min((encoding[i] for i in unleased), default=now)
    queued = encode_queue_length()
    pending = active.filter(
        index_state=IndexState.PENDING, updated_at__lte=now - timedelta(seconds=pending_after_s)
    )
    found = pending.aggregate(n=Count("pk"), oldest=Min("updated_at"))
    ids = pending.order_by("pk").values_list("pk", flat=True)
    pending_ids = list(ids if queued == 0 else ids[:PENDING_SAMPLE]) if found["n"] else []
    retrying: list[int] = []
    if queued == 0 and pending_ids:  # a task that will retry them holds their leases
        held = leased(pending_ids)
        retrying = [i for i in pending_ids if i in held]
        pending_ids = [i for i in pending_ids if i not in held]
    return StuckProducts(
        encoding=len(encoding),
        unleased=unleased,
        unleased_age_s=(now - oldest).total_seconds(),
        pending=found["n"],
        pending_ids=pending_ids,
        pending_age_s=(now - (found["oldest"] or now)).total_seconds(),
        retrying=retrying,
        queued_tasks=queued,
    )


def products_resend_stuck(*, pending_after_s: float, dry_run: bool = False) -> StuckProducts:
    """Send encode tasks again for products whose task died (or was never sent).

    `encoding` products without a live lease go back to `pending` (their task is gone)
    and are sent at once; old `pending` ones only while the encode queue is empty.
    """
    from catalog.services.enqueue import batched_encoding, enqueue_encoding

    started = time.monotonic()
    stuck = products_stuck(pending_after_s=pending_after_s)
    if dry_run:
        return stuck
    orphans: list[int] = []
    if stuck.unleased:
        # Read again: a task that finished between the query and the MGET has published them.
        orphans = list(
            Product.objects.filter(
                pk__in=stuck.unleased, is_active=True, index_state=IndexState.ENCODING
            ).values_list("pk", flat=True)
        )
        Product.objects.filter(pk__in=orphans, index_state=IndexState.ENCODING).update(
            **index_state_change(IndexState.PENDING)
        )
    resend = sorted(set(orphans) | (set(stuck.pending_ids) if stuck.pending_resendable else set()))
    if resend:
        with batched_encoding(chunk_size=settings.ENCODE_BATCH_PRODUCTS):
            enqueue_encoding(resend)
        logger.warning(
            "re-sent %d product(s) for encoding: %d left encoding by a dead task "
            "(waiting up to %.0fs), %d pending for over %.0fs (%.2fs)",
            len(resend),
            len(orphans),
            stuck.unleased_age_s,
            len(resend) - len(orphans),
            pending_after_s,
            time.monotonic() - started,
        )
    stuck.resent = len(resend)
    return stuck
