"""A shard replica: owns a Shard and follows the shard's update log.

``start()`` loads the newest valid snapshot (or starts empty), replays the log from the
snapshot's position, and ``poll_once``/``follow`` apply new entries in order, remembering
the last applied id. Redis going away is survived: reads back off and resume from the
last applied id, so nothing is lost or applied twice out of order.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

import redis

from workers.index import snapshot as snap
from workers.index.log import START, LogEntry, UpdateLog, parse_id
from workers.index.shard import Shard
from workers.index.spec import IndexSpec

logger = logging.getLogger(__name__)

COMPACT_AT = int(os.environ.get("INDEX_COMPACT_AT", "20000"))


def reader_name(host: str, pid: int, shard: int) -> str:
    """How a replica process registers its needed log position."""
    return f"{host}:{pid}:{shard}"


def parse_reader_name(name: str) -> tuple[str, int, int] | None:
    """(host, pid, shard) of a replica's registration; None for other readers (builds)."""
    parts = name.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return parts[0], int(parts[1]), int(parts[2])


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


class ShardReplica:
    def __init__(
        self,
        client: redis.Redis,
        shard: int,
        model: str,
        dim: int,
        index_dir: Path,
        *,
        spec: IndexSpec | str = "auto",
        name: str | None = None,
        batch: int = 256,
        compact_at: int = COMPACT_AT,
        backoff_base: float = 0.05,
        backoff_max: float = 5.0,
    ) -> None:
        self.log = UpdateLog(client, shard, model, dim)
        self.shard_no = shard
        self.model = model
        self.dim = dim
        self.directory = Path(index_dir) / f"shard-{shard}"
        self.spec = spec
        self.name = name or reader_name(socket.gethostname(), os.getpid(), shard)
        self.batch = batch
        self.compact_at = compact_at
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.failures = 0
        self.shard: Shard | None = None
        self.last_applied = START

    @property
    def work_dir(self) -> Path:
        return self.directory / "work"

    def start(self) -> Shard:
        """Load the newest valid snapshot (or an empty shard) and replay the log."""
        try:
            shard, position = Shard.load(self.directory, work_dir=self.work_dir)
        except FileNotFoundError:
            shard, position = Shard(self.dim, self.model, self.spec, work_dir=self.work_dir), START
        if shard.model != self.model or shard.dim != self.dim:
            raise ValueError(
                f"snapshot holds {shard.model!r}/{shard.dim}, "
                f"replica serves {self.model!r}/{self.dim}"
            )
        self.shard = shard
        self.last_applied = position
        self._call(lambda: self.log.register_position(self.name, self._oldest_needed()))
        self._call(self.forget_dead_predecessors)
        self.catch_up()
        return shard

    def forget_dead_predecessors(self) -> list[str]:
        """Unregister replicas of this shard that ran on this host and whose process is gone.

        Their needed positions would hold the log's trim floor forever. What they needed
        survives them only as snapshots in the shared directory, and this replica, having
        loaded from that directory, registered what it needs first.
        """
        host = socket.gethostname()
        gone = []
        for reader in self.log.readers():
            parsed = parse_reader_name(reader)
            if parsed is None or reader == self.name:
                continue
            reader_host, pid, shard = parsed
            if reader_host == host and shard == self.shard_no and not _process_alive(pid):
                self.log.unregister(reader)
                gone.append(reader)
        if gone:
            logger.info("shard %d: unregistered dead replicas %s", self.shard_no, gone)
        return gone

    def catch_up(self, max_rounds: int = 1_000_000) -> int:
        """Apply everything currently in the log; returns the number of entries applied."""
        total = 0
        for _ in range(max_rounds):
            before = self.last_applied
            total += self.poll_once(block_ms=None)
            if self.last_applied == before:
                break
        return total

    def poll_once(self, block_ms: int | None = None) -> int:
        """Read and apply one batch after the last applied id; Redis errors back off."""
        assert self.shard is not None, "start() first"
        try:
            entries, last = self.log.read_batch(self.last_applied, self.batch, block_ms)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._back_off(exc)
            return 0
        self.failures = 0
        for entry in entries:
            apply_entry(self.shard, entry)
        if parse_id(last) > parse_id(self.last_applied):
            self.last_applied = last
            self.shard.last_applied = last
        if self.shard.delta_size >= self.compact_at:
            self.shard.compact()
        return len(entries)

    def follow(self, stop: threading.Event, block_ms: int = 1000) -> None:
        """Apply entries until `stop` is set."""
        while not stop.is_set():
            self.poll_once(block_ms=block_ms)

    def snapshot(self) -> Path:
        """Snapshot the shard at the last applied id and advance this replica's needed position."""
        assert self.shard is not None, "start() first"
        path = self.shard.snapshot(self.directory, self.last_applied)
        self._call(lambda: self.log.register_position(self.name, self._oldest_needed()))
        return path

    def trim_log(self) -> int:
        """Trim the log behind the oldest position any registered replica still needs."""
        return int(self._call(lambda: self.log.trim_before(self._oldest_needed())) or 0)

    def swap_to(self, rebuilt: Shard, log_position: str) -> None:
        """Replay the log into a rebuilt shard from the position its build covers, then swap."""
        assert self.shard is not None, "start() first"
        position = log_position
        while True:
            entries, last = self.log.read_batch(position, self.batch, None)
            for entry in entries:
                apply_entry(rebuilt, entry)
            if parse_id(last) <= parse_id(position):
                break
            position = last
        # this replica applies entries in this thread only, so nothing arrived in between
        self.shard.swap_bulk(rebuilt)
        if parse_id(position) > parse_id(self.last_applied):
            self.last_applied = position
        self.shard.last_applied = self.last_applied
        logger.info("shard %s swapped to a rebuilt index at %s", self.shard_no, self.last_applied)

    def _oldest_needed(self) -> str:
        positions = snap.kept_positions(self.directory)
        return min(positions, key=parse_id) if positions else START

    def _back_off(self, exc: Exception) -> None:
        self.failures += 1
        delay = min(self.backoff_max, self.backoff_base * 2 ** (self.failures - 1))
        logger.warning("redis unavailable (%s); retrying in %.2fs", exc, delay)
        time.sleep(delay)

    def _call(self, fn):  # type: ignore[no-untyped-def]
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            logger.warning("redis unavailable for bookkeeping: %s", exc)
            return None


def apply_entry(shard: Shard, entry: LogEntry) -> bool:
    """Apply one log entry; entries for another model or malformed payloads are skipped."""
    if entry.model != shard.model or entry.dim != shard.dim:
        logger.warning("skipping entry %s for %s/%d", entry.entry_id, entry.model, entry.dim)
        return False
    try:
        if entry.op == "upsert":
            assert entry.vectors is not None
            assert entry.attrs is not None
            shard.upsert(entry.ids, entry.vectors, entry.attrs, model=entry.model)
        else:
            shard.delete(entry.ids)
    except ValueError as exc:
        logger.error("skipping entry %s: %s", entry.entry_id, exc)
        return False
    return True
