"""Self-maintenance of a live shard replica: compaction, snapshots to the store, log trimming.

Every replica keeps itself in shape (a Celery task would reach only one replica of
a shard). Thresholds come from the environment with working defaults. This is the one
place that decides when a live shard compacts (the compaction itself runs off the
shard's write lock: searches go on meanwhile, see `workers/index/compaction.py`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from workers.index.replica import ShardReplica
from workers.index.shard import Shard

logger = logging.getLogger(__name__)


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def fold_step(shard: Shard) -> float | None:
    """Fold one chunk of a graph shard's exact delta into its graph; the seconds to rest
    before the next chunk, or None when nothing is left. Each chunk holds the write lock
    (~25 ms for 64 vectors into a 1M graph), so the rest is as long as the chunk took:
    searches keep at least half the time, and a burst of 10k fresh vectors, which each
    query scans until folded (~20 MB at 512-d), is folded in seconds, not at one chunk
    per log poll (~200 ms) when the log is quiet."""
    started = time.monotonic()
    if not shard.fold_delta() or not shard.delta_size:
        return None
    return time.monotonic() - started


@dataclass(frozen=True)
class UpkeepPolicy:
    # Compact when this share of the slots holds removed or superseded vectors...
    max_removed_fraction: float = field(
        default_factory=lambda: _env_float("SHARD_COMPACT_REMOVED_FRACTION", 0.2)
    )
    # ... or when the exact delta index holds this many fresh vectors.
    max_delta: int = field(default_factory=lambda: int(_env_float("SHARD_COMPACT_DELTA", 20_000)))
    # A compressed IVF's fresh vectors cost no search time (their codes are in the lists,
    # their rows re-ranked in place) but 1 KB of RAM each, and compacting rewrites its
    # whole re-rank file (10 GB at 10M vectors): it waits for this share of the slots.
    max_fresh_fraction: float = field(
        default_factory=lambda: _env_float("SHARD_COMPACT_FRESH_FRACTION", 0.02)
    )
    # Publish a snapshot when this many seconds passed since the last one and something
    # changed; a fresh replica replays the log from the newest one.
    snapshot_every_s: float = field(
        default_factory=lambda: _env_float("SHARD_SNAPSHOT_EVERY_S", 300.0)
    )
    # Ignore the removed fraction of tiny shards (compaction is pointless there).
    min_slots: int = 1000


@dataclass
class Upkeep:
    policy: UpkeepPolicy = field(default_factory=UpkeepPolicy)
    last_snapshot_at: float = field(default_factory=time.monotonic)
    last_snapshot_position: str | None = None

    def run(self, replica: ShardReplica, now: float | None = None) -> list[str]:
        """Do what is due; returns what was done (for logs and tests)."""
        now = time.monotonic() if now is None else now
        shard = replica.shard
        if shard is None:
            return []
        done: list[str] = []
        stats = shard.stats()
        slots = int(stats.get("slots", 0))
        max_delta = self.policy.max_delta
        if stats.get("fresh_in_bulk"):
            max_delta = max(max_delta, int(self.policy.max_fresh_fraction * slots))
        if int(stats.get("delta_size", 0)) >= max_delta or (
            slots >= self.policy.min_slots
            and float(stats.get("removed_fraction", 0.0)) >= self.policy.max_removed_fraction
        ):
            shard.compact()
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
