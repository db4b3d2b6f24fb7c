"""Self-maintenance of a live shard replica: compaction, snapshots to the store, log trimming.

Every replica keeps itself in shape (a Celery task would reach only one replica of
a shard). Its thresholds are the worker configuration's `upkeep` section. This is the
one place that decides when a live shard compacts (the compaction itself runs off the
shard's write lock: searches go on meanwhile, see `workers/index/compaction.py`). In the
shard service it also runs on a thread of its own, so the log goes on being applied while
a large shard compacts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field

from workers.config import UpkeepPolicy
from workers.index.replica import ShardReplica
from workers.index.shard import Shard
from workers.index.stats import stat_number

logger = logging.getLogger(__name__)


def fold_step(shard: Shard) -> float | None:
    """Fold one chunk of a graph shard's exact delta into its graph; the seconds to rest
    before the next chunk, or None when nothing is left. Each chunk holds the write lock,
    so the rest is as long as the chunk took: searches keep at least half the time, and a
    burst of fresh vectors, which every query scans until folded, is folded at once, not
    one chunk per log poll when the log is quiet."""
    started = time.monotonic()
    if not shard.fold_delta() or not shard.delta_size:
        return None
    return time.monotonic() - started


@dataclass
class Upkeep:
    policy: UpkeepPolicy = field(default_factory=UpkeepPolicy)
    last_snapshot_at: float = field(default_factory=time.monotonic)
    last_snapshot_position: str | None = None
    # compact on a thread of its own (the shard service), not in the caller's
    background: bool = False
    _compaction: threading.Thread | None = field(default=None, init=False, repr=False)

    def run(self, replica: ShardReplica, now: float | None = None) -> list[str]:
        """Do what is due; returns what was done (for logs and tests)."""
        now = time.monotonic() if now is None else now
        shard = replica.shard
        if shard is None:
            return []
        done: list[str] = []
        stats = shard.stats()
        slots = int(stat_number(stats, "slots"))
        max_delta = self.policy.max_delta
        if stats.get("fresh_in_bulk"):
            max_delta = max(max_delta, int(self.policy.max_fresh_fraction * slots))
        due_compaction = stat_number(stats, "delta_size") >= max_delta or (
            slots >= self.policy.min_slots
            and stat_number(stats, "removed_fraction") >= self.policy.max_removed_fraction
        )
        if due_compaction and self._compact(shard):
            done.append("compact")
        due = now - self.last_snapshot_at >= self.policy.snapshot_every_s
        if due and replica.last_applied != self.last_snapshot_position:
            # one replica of the shard publishes (a lease); the others find it done
            if replica.publish_snapshot() is not None:
                done.append("snapshot")
            self.last_snapshot_at, self.last_snapshot_position = now, replica.last_applied
        if done:
            logger.info("shard %s upkeep: %s", replica.shard_no, ", ".join(done))
        return done

    @property
    def compacting(self) -> bool:
        return self._compaction is not None and self._compaction.is_alive()

    def _compact(self, shard: Shard) -> bool:
        """Compact now, or start a compaction on its own thread; False while one runs."""
        if not self.background:
            shard.compact()
            return True
        if self.compacting:
            return False
        self._compaction = compact_aside(shard)
        return True


def compact_aside(shard: Shard) -> threading.Thread:
    """Start a compaction on a thread of its own at the lowest CPU priority: where cores
    are short, the searches that share them go first."""
    thread = threading.Thread(
        target=_compact_niced, args=(shard,), name="shard-compaction", daemon=True
    )
    thread.start()
    return thread


def _compact_niced(shard: Shard) -> None:
    with contextlib.suppress(AttributeError, OSError):  # Linux: this thread alone
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    try:
        shard.compact()
    except Exception:  # a failed compaction leaves the live state as it was
        logger.exception("shard compaction failed")
