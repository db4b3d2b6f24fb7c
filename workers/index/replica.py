"""A shard replica: a state it can prove, kept current from the shard's update log.

A replica is ready only when its state covers a log position and the retained log goes on
from there without a gap. ``recover()`` gets such a state: the newest artifact of the
current build generation in the store (verified by checksum; a corrupt one is refused and
the previous one tried), else an empty shard when the log still holds every entry ever
written; otherwise it stays not ready and says why. ``poll_once`` then applies new
entries in order. Every replica works in its own local directory; the store is shared.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import redis

from workers.index.artifacts import Artifact, ArtifactError, ArtifactStore, CorruptArtifact
from workers.index.build_pointer import INITIAL_BUILD, BuildPointer, current_build
from workers.index.lifecycle import candidates, generation, trim_floor
from workers.index.log import START, LogEntry, UpdateLog, parse_id
from workers.index.membership import MemberState, live_members
from workers.index.shard import Shard
from workers.index.spec import IndexSpec
from workers.index.stats import stat_number
from workers.pids import process_alive

logger = logging.getLogger(__name__)


def replica_name(host: str, pid: int, shard: int) -> str:
    return f"{host}:{pid}:{shard}"


class NotCovered(RuntimeError):
    """No state this replica can get is continued by the retained log: a build is needed."""


class ShardReplica:
    def __init__(
        self,
        client: redis.Redis,
        shard: int,
        model: str,
        dim: int,
        *,
        store: ArtifactStore,
        local_dir: Path,
        spec: IndexSpec | str = "auto",
        host: str | None = None,
        batch: int = 256,
        keep_snapshots: int = 2,
        store_grace_s: float = 600.0,
        backoff_base: float = 0.05,
        backoff_max: float = 5.0,
    ) -> None:
        self.client = client
        self.log = UpdateLog(client, shard, model, dim)
        self.store = store
        self.shard_no = shard
        self.model = model
        self.dim = dim
        self.spec = spec
        self.host = host or socket.gethostname()
        self.name = replica_name(self.host, os.getpid(), shard)
        self.local_dir = Path(local_dir) / f"shard-{shard}"
        self.work_dir = self.local_dir / f"work-{os.getpid()}"
        self.batch = batch
        self.keep_snapshots = keep_snapshots
        self.store_grace_s = store_grace_s
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.failures = 0
        self.shard: Shard | None = None
        self.last_applied = START
        self.build_id = ""
        self.ready = False
        self.reason = "starting"
        self.newest_artifact_at: float | None = None  # when the store's newest was published

    @property
    def cache_dir(self) -> Path:
        return self.local_dir / "cache"

    # ------------------------------------------------------------ recovery

    def recover(self) -> bool:
        """Get a state the log continues and replay it; False (with `reason`) when none is.

        Raises NotCovered when the store holds no artifact the retained log continues
        and the log alone is not the whole shard either: only a build can help then.
        """
        self._set_not_ready(self.reason if self.shard is None else "recovering")
        self._clear_stale_work_dirs()
        try:
            pointer = current_build(self.client, self.shard_no)
            artifacts = self.store.list(self.shard_no)
        except (ArtifactError, redis.RedisError) as exc:
            self._set_not_ready(f"store or Redis unreachable: {exc}")
            return False
        build_id = generation(pointer, artifacts)
        loaded: tuple[Shard, str, Artifact | None] | None = self._load_newest_covering(
            candidates(artifacts, build_id)
        )
        if loaded is None:
            if build_id != INITIAL_BUILD or not self.log.covers(START):
                self._set_not_ready("no artifact in the store is continued by the log")
                raise NotCovered(self.reason)
            shard = Shard(self.dim, self.model, self.spec, work_dir=self.work_dir / "initial")
            loaded = (shard, START, None)
        shard, position, artifact = loaded
        self._install(shard, position, build_id)
        self.catch_up()
        if not self.log.covers(position):  # trimmed past us while we replayed: start over
            self._set_not_ready("the log was trimmed during the replay")
            return False
        self.ready, self.reason = True, ""
        logger.info(
            "shard %d: ready at %s from %s (%d vectors)",
            self.shard_no,
            self.last_applied,
            artifact.artifact_id if artifact else "an empty shard and the whole log",
            int(stat_number(shard.stats(), "vectors")),
        )
        return True

    def _load_newest_covering(
        self, artifacts: list[Artifact]
    ) -> tuple[Shard, str, Artifact] | None:
        for artifact in artifacts:
            if not self.log.covers(artifact.log_position):
                return None  # older ones are further behind the trim
            try:
                path = self.store.fetch(artifact, self.cache_dir)
                shard, position = Shard.load_dir(
                    path, self.work_dir / artifact.artifact_id, verify=False
                )
            except CorruptArtifact as exc:
                logger.error("shard %d: refusing artifact: %s", self.shard_no, exc)
                continue
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                logger.error("shard %d: cannot load %s: %s", self.shard_no, artifact.uri, exc)
                continue
            if shard.model != self.model or shard.dim != self.dim:
                logger.error("shard %d: %s holds another model", self.shard_no, artifact.uri)
                continue
            return shard, position, artifact
        return None

    def _install(self, shard: Shard, position: str, build_id: str) -> None:
        old = self.shard
        self.shard, self.last_applied, self.build_id = shard, position, build_id
        shard.last_applied = position
        if old is not None and old is not shard:
            old.swap_bulk(shard)  # searches holding the old object see the new state too
            self.shard = old

    def _set_not_ready(self, reason: str) -> None:
        if self.ready or reason != self.reason:
            logger.warning("shard %d: not ready: %s", self.shard_no, reason)
        self.ready, self.reason = False, reason

    def check_coverage(self) -> bool:
        """Still continued by the log? A trim past our position means we missed entries."""
        if self.ready and not self.log.covers(self.last_applied):
            self._set_not_ready(f"the log was trimmed past position {self.last_applied}")
        return self.ready

    def _clear_stale_work_dirs(self) -> None:
        """Work folders of this host's dead replica processes (their re-rank files)."""
        for path in self.local_dir.glob("work-*"):
            pid = path.name[5:]
            if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------ the log

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
        assert self.shard is not None, "recover() first"
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
        return len(entries)

    def follow(self, stop: threading.Event, block_ms: int = 1000) -> None:
        """Apply entries until `stop` is set."""
        while not stop.is_set():
            self.poll_once(block_ms=block_ms)

    # ------------------------------------------------------------ builds

    def swap_to_build(self, pointer: BuildPointer) -> bool:
        """Move to a newly published generation: its newest covering artifact, replayed."""
        assert self.shard is not None, "recover() first"
        if pointer.build_id == self.build_id:
            return False
        artifacts = candidates(self.store.list(self.shard_no), pointer.build_id)
        loaded = self._load_newest_covering(artifacts)
        if loaded is None:
            logger.error(
                "shard %d: build %s has no artifact the log continues; serving the previous one",
                self.shard_no,
                pointer.build_id,
            )
            return False
        rebuilt, position, artifact = loaded
        while True:  # replay into the new state aside, then swap it in whole
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
        self.build_id = pointer.build_id
        logger.info(
            "shard %d: swapped to build %s (%s) at %s",
            self.shard_no,
            pointer.build_id,
            artifact.artifact_id,
            self.last_applied,
        )
        return True

    # ------------------------------------------------------------ the store

    def publish_snapshot(self, lease_s: float = 900.0) -> Artifact | None:
        """Publish the state to the store (one writer per shard at a time), then collect
        superseded artifacts and trim the log behind the new one. None when another
        replica holds the lease, this one is not on the current generation, or the store
        already holds this position."""
        assert self.shard is not None, "recover() first"
        if not self.ready:
            return None
        lease = self.client.lock(
            f"search:index:snapshot-lease:{self.shard_no}", timeout=lease_s, blocking=False
        )
        if not lease.acquire(blocking=False):
            return None
        try:
            artifacts = self.store.list(self.shard_no)
            build_id = generation(current_build(self.client, self.shard_no), artifacts)
            newest = candidates(artifacts, build_id)
            if newest:
                self.newest_artifact_at = max(a.created for a in newest)
            if build_id != self.build_id or (
                newest and parse_id(newest[0].log_position) >= parse_id(self.last_applied)
            ):
                return None
            scratch = self.work_dir / "publish"
            shutil.rmtree(scratch, ignore_errors=True)
            position = self.last_applied
            folder = self.shard.snapshot(scratch, position)
            try:
                artifact = self.store.publish(
                    self.shard_no,
                    folder,
                    kind="snapshot",
                    build_id=build_id,
                    log_position=position,
                    meta={
                        "vectors": int(stat_number(self.shard.stats(), "vectors")),
                        "by": self.name,
                    },
                )
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            self.newest_artifact_at = artifact.created
            self.store.collect_garbage(
                self.shard_no,
                current_build=build_id,
                keep_snapshots=self.keep_snapshots,
                grace_s=self.store_grace_s,
            )
            self.trim_log()
            return artifact
        finally:
            try:
                lease.release()
            except redis.exceptions.LockError:
                logger.warning("shard %d: snapshot lease expired before release", self.shard_no)

    def trim_log(self) -> int:
        """Trim the log behind the retained artifacts and every live member's position."""
        # members first, so a build that starts meanwhile is seen; our own heartbeat may
        # lag behind what we applied, so our current state stands in for it
        members = [m for m in live_members(self.client, self.shard_no) if m.name != self.name]
        members.append(self.state())
        artifacts = self.store.list(self.shard_no)
        build_id = generation(current_build(self.client, self.shard_no), artifacts)
        floor = trim_floor(members, artifacts, build_id, keep=self.keep_snapshots)
        return self.log.trim_before(floor) if floor else 0

    # ------------------------------------------------------------ heartbeat

    def state(self) -> MemberState:
        shard = self.shard
        return MemberState(
            name=self.name,
            shard=self.shard_no,
            host=self.host,
            pid=os.getpid(),
            role="replica",
            ready=self.ready,
            reason=self.reason,
            position=self.last_applied if shard is not None else "",
            vectors=int(stat_number(shard.stats(), "vectors")) if shard is not None else 0,
            build_id=self.build_id,
            updated=time.time(),
        )

    def _back_off(self, exc: Exception) -> None:
        self.failures += 1
        delay = min(self.backoff_max, self.backoff_base * 2 ** (self.failures - 1))
        logger.warning("redis unavailable (%s); retrying in %.2fs", exc, delay)
        time.sleep(delay)


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
