"""One shard replica served over the Redis RPC: follow the update log, answer searches.

Django-free. Two threads: one applies the shard's log as it grows, one pops
search requests and answers them in batches. `stop()` finishes the batch in
flight and writes a snapshot, so a restart replays only what came after.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis

from workers.encoding.registry import published_model
from workers.index.builds import current_build
from workers.index.replica import ShardReplica
from workers.index.shard import Shard
from workers.index.threads import use_search_threads
from workers.index.types import SearchFilter, SearchResult
from workers.malloc import keep_freed_memory
from workers.observability.shard_gauges import run_reporter
from workers.rpc.connection import connect
from workers.rpc.search import make_search_handler, shard_queue_key
from workers.rpc.server import RpcServer
from workers.serving.upkeep import Upkeep, fold_step

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardServiceConfig:
    redis_url: str
    shard: int
    index_dir: Path
    spec: str = "auto"
    batch_cap: int = 64
    model_wait_s: float = 600.0
    build_check_s: float = 2.0


class ShardService:
    def __init__(self, config: ShardServiceConfig) -> None:
        self.config = config
        self.client = connect(config.redis_url, socket_timeout=10.0)
        self.replica: ShardReplica | None = None
        self.server: RpcServer | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.upkeep = Upkeep()
        self.ready = threading.Event()

    def _model(self) -> tuple[str, int]:
        """The encoder's model and dimension, as published by the encode workers."""
        deadline = time.monotonic() + self.config.model_wait_s
        while not self._stop.is_set():
            try:
                found = published_model(self.client)
            except Exception as exc:  # Redis not reachable yet: keep waiting, visibly
                logger.warning("shard %d: waiting for Redis: %s", self.config.shard, exc)
                found = None
            if found:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError("no encode worker published its model")
            self._stop.wait(0.5)
        raise RuntimeError("stopped before the model was known")

    def _search(self, queries: np.ndarray, k: int, filters: SearchFilter) -> SearchResult:
        shard = self.replica.shard if self.replica is not None else None
        if shard is None:
            raise RuntimeError("shard not loaded yet")
        return shard.search(queries, k, filters)  # looked up per call: the shard may be swapped

    def start(self) -> None:
        """Return at once; loading, replay and serving happen in background threads."""
        keep_freed_memory()  # search temporaries reuse freed memory (see workers/malloc.py)
        thread = threading.Thread(target=self._run, name=f"shard-{self.config.shard}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run(self) -> None:
        # OpenMP thread counts are per calling thread: this one answers the searches.
        # One FAISS thread per query: two spin on a barrier and are several times slower.
        use_search_threads()
        shard = self.config.shard
        try:
            model, dim = self._model()
        except RuntimeError:
            return
        self.replica = ShardReplica(
            self.client, shard, model, dim, self.config.index_dir, spec=self.config.spec
        )
        replica = self.replica
        started = time.monotonic()
        replica.start()
        logger.info(
            "shard %d: loaded and replayed to %s in %.2fs (%s vectors)",
            shard,
            replica.last_applied,
            time.monotonic() - started,
            replica.shard.stats().get("vectors") if replica.shard else "?",
        )
        self.server = RpcServer(
            self.client,
            shard_queue_key(shard),
            make_search_handler(self._search, shard=shard, dim=dim),
            batch_cap=self.config.batch_cap,
            name=f"shard-{shard}",
        )
        follower = threading.Thread(target=self._follow, name=f"shard-{shard}-log", daemon=True)
        follower.start()
        self._threads.append(follower)
        reporter = threading.Thread(
            target=run_reporter,
            args=(self._stop, lambda: self.replica),
            name=f"shard-{shard}-metrics",
            daemon=True,
        )
        reporter.start()
        self._threads.append(reporter)
        self.ready.set()
        self.server.serve_forever(self._stop)

    def _follow(self) -> None:
        """Apply the log as it grows; now and then, swap to a newly published build."""
        assert self.replica is not None
        use_search_threads()
        next_check = 0.0
        folding = False
        while not self._stop.is_set():
            self.replica.poll_once(block_ms=None if folding else 200)  # no wait mid-fold
            folding = False
            try:  # upkeep must never stop the log: log a failure, keep serving
                shard = self.replica.shard
                rest = fold_step(shard) if shard is not None else None
                if rest is not None:  # a graph's exact delta, a chunk at a time
                    folding = True
                    self._stop.wait(rest)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.config.build_check_s
                    self.swap_to_new_build()
                    self.upkeep.run(self.replica)
            except Exception:
                logger.exception("shard %d: upkeep failed", self.config.shard)

    @property
    def _build_marker(self) -> Path:
        return self.config.index_dir / f"shard-{self.config.shard}" / "applied-build"

    def swap_to_new_build(self) -> bool:
        """Load the newest published build (if this replica has not) and swap to it."""
        replica = self.replica
        assert replica is not None
        try:
            pointer = current_build(self.client, self.config.shard)
        except redis.RedisError:
            return False
        applied = self._build_marker.read_text().strip() if self._build_marker.exists() else ""
        if pointer is None or pointer.build_id == applied:
            return False
        started = time.monotonic()
        rebuilt, position = Shard.load(
            Path(pointer.path), work_dir=replica.work_dir / pointer.build_id
        )
        replica.swap_to(rebuilt, position)
        replica.snapshot()
        self._build_marker.write_text(pointer.build_id)
        logger.info(
            "shard %d: swapped to build %s (%s) in %.2fs",
            self.config.shard,
            pointer.build_id,
            pointer.spec,
            time.monotonic() - started,
        )
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Finish in-flight requests, stop following the log, write a snapshot."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        if self.replica is not None and self.replica.shard is not None:
            path = self.replica.snapshot()
            logger.info("shard %d: snapshot written to %s", self.config.shard, path)
