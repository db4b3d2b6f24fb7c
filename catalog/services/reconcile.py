"""Reconciliation: every replica of every shard holds exactly the database's active
embeddings, with the attributes the database has now.

Each live replica sends a digest of its rows (image id -> hash of product, category,
price, stock: workers/index/digest.py); the database's rows are hashed the same way and
compared per replica: ids missing, extra, and stale (present with other attributes).
Repairs go through the index's own paths, so every replica of the shard takes them
from its log: products with a missing or stale image are marked pending and encoded
again (the encode task reuses stored vectors and publishes current attributes); extra
ids get delete entries. Only ready replicas are compared: one still replaying is
behind by design.

The replicas are asked first and the database read after them. An upsert reaches the
log after its embedding is committed, so an id a replica holds that the later read
does not want is really gone: deleting it cannot undo a fresh write. The other way
round, a write between the two reads shows as missing or stale and costs one
idempotent encode. Products whose own update is under way (pending, encoding) are
counted as in flight, not repaired again; `stuck` reports those left in such a state
for longer than RECONCILE_STUCK_AFTER_S.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field

import numpy as np
from django.conf import settings
from redis.exceptions import LockError

from catalog.models import IndexState, Product, index_state_change
from catalog.redis_clients import redis_client
from catalog.selectors import StuckInState, products_stuck_in_state
from catalog.services.enqueue import batched_encoding, enqueue_encoding
from catalog.services.expected_digests import Expected, expected_digests
from catalog.services.indexing import append_deletes
from catalog.services.replica_digests import ShardAnswers, ask_replicas
from workers.encoding.registry import published_model
from workers.index.digest import DigestDiff, compare
from workers.queues import shard_queue

logger = logging.getLogger(__name__)
SAMPLE = 20  # ids listed per kind of difference
LOCK_KEY = "reconcile:running"
LOCK_TTL_S = 1860  # the task's time limit and a minute: a killed run's lock lapses


# ------------------------------------------------------------------ the report


@dataclass
class ReplicaReport:
    name: str
    host: str
    ready: bool
    reason: str
    position: str
    rows: int
    answered: bool
    compared: bool = False  # ready and holding a state: its differences count
    missing: int = 0
    extra: int = 0
    stale: int = 0
    in_flight: int = 0  # missing or stale, but the product's update is under way
    missing_ids: list[int] = field(default_factory=list)  # up to SAMPLE of each
    extra_ids: list[int] = field(default_factory=list)
    stale_ids: list[int] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return self.compared and bool(self.missing or self.extra or self.stale)


@dataclass
class ShardReport:
    shard: int
    expected: int
    replicas: list[ReplicaReport]  # those that answered, then the silent ones
    missing: int = 0  # over every compared replica
    extra: int = 0
    stale: int = 0
    in_flight: int = 0
    products_resent: int = 0  # repairs made (or, on a dry run, due)
    ids_deleted: int = 0

    @property
    def not_answering(self) -> list[str]:
        return [r.name for r in self.replicas if not r.answered]

    @property
    def clean(self) -> bool:
        """Every live replica answered and matched (a shard with none is not clean)."""
        return bool(self.replicas) and not (
            self.missing or self.extra or self.stale or self.not_answering
        )


@dataclass
class ReconcileReport:
    shards: list[ShardReport]
    stuck: list[StuckInState]
    stuck_after_s: float
    repaired: bool  # False: a dry run
    model: str = ""
    seconds: float = 0.0
    redis_bytes: int = 0  # digest bytes the replicas sent

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        for shard, row in zip(self.shards, out["shards"], strict=True):
            row["not_answering"] = shard.not_answering
        return out


# ------------------------------------------------------------------ the comparison


def reconcile(
    *, repair: bool = True, timeout: float = 30.0, stuck_after_s: float | None = None
) -> ReconcileReport:
    """Compare every live replica of every shard with the database; repair unless told not
    to; report products stuck in an in-flight state. Safe to run at any time."""
    started = time.monotonic()
    stuck_after_s = settings.RECONCILE_STUCK_AFTER_S if stuck_after_s is None else stuck_after_s
    report = ReconcileReport(
        shards=[],
        stuck=products_stuck_in_state(older_than_s=stuck_after_s),
        stuck_after_s=stuck_after_s,
        repaired=repair,
    )
    published = published_model(redis_client())
    if published is None:
        return report
    report.model = published[0]
    asked = ask_replicas(range(settings.SEARCH_SHARDS), timeout)  # first: see the docstring
    expected = expected_digests(*published)
    for shard in range(settings.SEARCH_SHARDS):
        report.shards.append(_shard_report(shard, expected[shard], asked.shards[shard], repair))
    report.redis_bytes = asked.redis_bytes
    report.seconds = time.monotonic() - started
    return report


def _shard_report(shard: int, want: Expected, asked: ShardAnswers, repair: bool) -> ShardReport:
    out = ShardReport(shard=shard, expected=len(want.digest), replicas=[])
    missing, extra, stale, in_flight = (np.zeros(0, dtype=np.int64) for _ in range(4))
    for found in sorted(asked.answered, key=lambda r: r.answer.replica):
        a = found.answer
        row = ReplicaReport(a.replica, a.host, a.ready, a.reason, a.position, a.rows, True)
        out.replicas.append(row)
        if a.ready and found.digest is not None:
            diff = compare(want.digest, found.digest)
            mine = _compared(row, want, diff)
            missing = np.union1d(missing, mine.missing)
            extra = np.union1d(extra, mine.extra)
            stale = np.union1d(stale, mine.stale)
            in_flight = np.union1d(in_flight, np.setdiff1d(diff.missing, mine.missing))
            in_flight = np.union1d(in_flight, np.setdiff1d(diff.stale, mine.stale))
    for member in sorted(asked.silent, key=lambda m: m.name):
        out.replicas.append(
            ReplicaReport(
                member.name, member.host, member.ready, member.reason, member.position, 0, False
            )
        )
    due = np.union1d(missing, stale)
    products = np.unique(want.product_ids[np.searchsorted(want.digest.ids, due)])
    out.missing, out.extra, out.stale = int(missing.size), int(extra.size), int(stale.size)
    out.in_flight = int(in_flight.size)
    out.products_resent, out.ids_deleted = int(products.size), int(extra.size)
    if repair:
        _resend(products.tolist())
        if extra.size:
            append_deletes(shard, extra.tolist())
    if not out.clean:
        logger.warning(
            "reconcile shard %d: %d missing, %d extra, %d stale (%d in flight); silent: %s",
            shard,
            out.missing,
            out.extra,
            out.stale,
            out.in_flight,
            ", ".join(out.not_answering) or "none",
        )
    return out


def _compared(row: ReplicaReport, want: Expected, diff: DigestDiff) -> DigestDiff:
    """Fill the replica's row from its differences; those whose product is not in flight."""

    def settled(ids: np.ndarray) -> np.ndarray:
        return ids[~want.in_flight[np.searchsorted(want.digest.ids, ids)]]

    mine = DigestDiff(missing=settled(diff.missing), extra=diff.extra, stale=settled(diff.stale))
    row.compared = True
    row.missing, row.extra, row.stale = mine.missing.size, mine.extra.size, mine.stale.size
    row.in_flight = diff.missing.size + diff.stale.size - mine.missing.size - mine.stale.size
    row.missing_ids = mine.missing[:SAMPLE].tolist()
    row.extra_ids = mine.extra[:SAMPLE].tolist()
    row.stale_ids = mine.stale[:SAMPLE].tolist()
    return mine


RESEND_CHUNK = 5000


def _resend(product_ids: list[int]) -> None:
    """Mark the products pending and encode them again (the index update's own path)."""
    for lo in range(0, len(product_ids), RESEND_CHUNK):
        chunk = product_ids[lo : lo + RESEND_CHUNK]
        Product.objects.filter(pk__in=chunk, is_active=True).update(
            **index_state_change(IndexState.PENDING)
        )
        with batched_encoding(chunk_size=settings.ENCODE_BATCH_PRODUCTS):
            enqueue_encoding(chunk)


# ------------------------------------------------------------------ one at a time


class ReconcileRunning(RuntimeError):
    """Another reconcile holds the lock."""


def reconcile_exclusive(
    *, repair: bool = True, timeout: float = 30.0, stuck_after_s: float | None = None
) -> ReconcileReport:
    """`reconcile` under a Redis lock, so beat runs and manual ones never overlap;
    raises ReconcileRunning while another holds it."""
    lock = redis_client().lock(LOCK_KEY, timeout=LOCK_TTL_S, blocking=False)
    if not lock.acquire():
        raise ReconcileRunning("another reconcile is running")
    try:
        return reconcile(repair=repair, timeout=timeout, stuck_after_s=stuck_after_s)
    finally:
        try:
            lock.release()
        except LockError:  # it lapsed (a run longer than LOCK_TTL_S): nothing to release
            logger.warning("reconcile: the lock lapsed before the run ended")


# ------------------------------------------------------------------ ids alone


class ShardDidNotAnswer(TimeoutError):
    """No search worker of the shard wrote its ids in time."""


def live_ids(shard: int, timeout: float = 60.0) -> np.ndarray:
    """Ask one replica of the shard (whichever takes the task) for its live ids.

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
