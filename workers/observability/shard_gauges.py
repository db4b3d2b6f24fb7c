"""The per-shard gauges, refreshed by each replica every few seconds.

Update lag is the age of the oldest log entry the replica has not applied yet, 0 when
it is caught up; `last_applied_age` is the age of the newest entry it has applied
(which also grows when nobody writes). An entry's time is its `ts` field (set by the
writer), or the time part of its stream id when the entry is gone.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

from workers.config import ObservabilityConfig
from workers.index.log import START, parse_id
from workers.index.stats import stat_mapping, stat_number
from workers.observability import metrics

if TYPE_CHECKING:
    from workers.index.replica import ShardReplica

logger = logging.getLogger(__name__)


def _entry_time(entry_id: str, fields: dict[bytes, bytes] | None) -> float:
    if fields and b"ts" in fields:
        try:
            return float(fields[b"ts"])
        except ValueError:
            pass
    return parse_id(entry_id)[0] / 1000.0


def _first(reply: list) -> tuple[str, dict[bytes, bytes]] | None:
    if not reply:
        return None
    raw_id, fields = reply[0]
    return (raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)), fields


def log_times(
    client: redis.Redis, key: str, last_applied: str
) -> tuple[float | None, float | None]:
    """(time of the last applied entry or None, time of the oldest unapplied entry or None)."""
    pipe = client.pipeline(transaction=False)
    pipe.xrange(key, min=last_applied, max=last_applied, count=1)
    pipe.xrange(key, min=f"({last_applied}", count=1)
    applied, pending = (_first(r) for r in pipe.execute())
    applied_at = None
    if last_applied != START:
        applied_at = _entry_time(last_applied, applied[1] if applied else None)
    pending_at = _entry_time(*pending) if pending else None
    return applied_at, pending_at


def measure(replica: ShardReplica, now: float | None = None) -> dict[str, float]:
    """A replica's counts, tuned parameters, update lag and snapshot age (no side effects).

    The gauges, the `shard_stats` task and the admin's Search health page all read this.
    """
    shard = replica.shard
    if shard is None:
        return {"ready": float(replica.ready)}
    now = time.time() if now is None else now
    stats = shard.stats()
    params = stat_mapping(stats, "params")
    values: dict[str, float] = {
        "ready": float(replica.ready),
        "vectors": stat_number(stats, "vectors"),
        "delta_size": stat_number(stats, "delta_size"),
        "removed_fraction": stat_number(stats, "removed_fraction"),
        "nprobe": stat_number(params, "nprobe", math.nan),
        "ef_search": stat_number(params, "ef_search", math.nan),
    }
    try:
        log = replica.log
        applied_at, pending_at = log_times(log.client, log.key, replica.last_applied)
    except redis.RedisError as exc:
        logger.debug("shard %s metrics: log unreachable: %s", replica.shard_no, exc)
    else:
        values["update_lag_s"] = max(0.0, now - pending_at) if pending_at is not None else 0.0
        if applied_at is not None:
            values["last_applied_age_s"] = max(0.0, now - applied_at)
    snapshot_at = replica.newest_artifact_at
    if snapshot_at is not None:
        values["snapshot_age_s"] = max(0.0, now - snapshot_at)
    return values


def refresh(replica: ShardReplica, now: float | None = None) -> dict[str, float]:
    """Set the gauges of one replica; returns the values set (for logs and tests)."""
    values = measure(replica, now)
    label = str(replica.shard_no)
    for key, gauge in (
        ("ready", metrics.SHARD_READY),
        ("vectors", metrics.SHARD_VECTORS),
        ("delta_size", metrics.SHARD_DELTA),
        ("removed_fraction", metrics.SHARD_REMOVED_FRACTION),
        ("nprobe", metrics.SHARD_NPROBE),
        ("ef_search", metrics.SHARD_EF_SEARCH),
        ("update_lag_s", metrics.SHARD_UPDATE_LAG),
        ("last_applied_age_s", metrics.SHARD_LAST_APPLIED_AGE),
        ("snapshot_age_s", metrics.SHARD_SNAPSHOT_AGE),
    ):
        if key in values:
            gauge.labels(label).set(values[key])
    return values


def run_reporter(
    stop: threading.Event,
    replica: Callable[[], ShardReplica | None],
    every_s: float = ObservabilityConfig.shard_metrics_every_s,
) -> None:
    """Refresh the gauges until `stop` is set (a thread's target); errors are logged."""
    while not stop.is_set():
        current = replica()
        if current is not None:
            try:
                refresh(current)
            except Exception:  # metrics must never take the shard down
                logger.exception("shard metrics refresh failed")
        stop.wait(every_s)
