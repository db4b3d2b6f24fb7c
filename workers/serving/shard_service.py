"""One shard replica served over the Redis RPC: prove a state, follow the log, answer searches.

Django-free. Threads: one gets the replica ready (from the artifact store and the log)
and then applies the log as it grows, one pops search requests while the replica is
ready, one beats its membership heartbeat. `stop()` finishes the batch in flight and
publishes a snapshot, so a restart anywhere replays only what came after.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis

from workers.config import WorkerConfig
from workers.encoding.registry import published_model
from workers.index.artifacts import ArtifactStore
from workers.index.build_pointer import current_build
from workers.index.membership import beat, leave
from workers.index.replica import NotCovered, ShardReplica
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
    index_dir: Path  # this host's own working directory
    store_url: str  # the artifact store every host shares
    spec: str = "auto"
    batch_cap: int = 64
    model_wait_s: float = 600.0
    build_check_s: float = 2.0
    heartbeat_s: float = 2.0
    member_ttl_s: float = 10.0
    host: str | None = None
    keep_snapshots: int = 2
    store_grace_s: float = 600.0
    retry_max_s: float = 30.0  # longest wait between tries to get ready
    worker: WorkerConfig = field(default_factory=WorkerConfig)  # RPC, threads, upkeep, ...


BuildRequest = Callable[[int], None]


class ShardService:
    def __init__(
        self, config: ShardServiceConfig, request_build: BuildRequest | None = None
    ) -> None:
        self.config = config
        self.client = connect(
            config.redis_url,
            socket_timeout=10.0,
            connect_timeout=config.worker.rpc.connect_timeout_s,
        )
        self.store = ArtifactStore(config.store_url)
        self.request_build = request_build
        self.replica: ShardReplica | None = None
        self.server: RpcServer | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.upkeep = Upkeep(config.worker.upkeep, background=True)
        self.serving = threading.Event()  # set while the replica is ready: requests are popped
        self.ready = self.serving  # the name tests and tasks wait on

    def status(self) -> tuple[bool, str]:
        """(ready, why not) for the readiness probe."""
        replica = self.replica
        if replica is None:
            return False, "waiting for the encoder's model"
        return replica.ready, replica.reason

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
        # search temporaries reuse freed memory (see workers/malloc.py)
        keep_freed_memory(self.config.worker.memory)
        thread = threading.Thread(target=self._run, name=f"shard-{self.config.shard}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run(self) -> None:
        # OpenMP thread counts are per calling thread: this one answers the searches.
        # One FAISS thread per query: two spin on a barrier and are several times slower.
        use_search_threads(self.config.worker.index.search_threads)
        shard = self.config.shard
        try:
            model, dim = self._model()
        except RuntimeError:
            return
        self.replica = ShardReplica(
            self.client,
            shard,
            model,
            dim,
            store=self.store,
            local_dir=self.config.index_dir,
            spec=self.config.spec,
            host=self.config.host,
            keep_snapshots=self.config.keep_snapshots,
            store_grace_s=self.config.store_grace_s,
        )
        self.server = RpcServer(
            self.client,
            shard_queue_key(shard),
            make_search_handler(self._search, shard=shard, dim=dim),
            batch_cap=self.config.batch_cap,
            name=f"shard-{shard}",
            limits=self.config.worker.protocol,
            slow_log_s=self.config.worker.rpc.slow_log_ms / 1e3,
        )
        for target, name in (
            (self._follow, "log"),
            (self._heartbeat, "heartbeat"),
            (self._report, "metrics"),
        ):
            thread = threading.Thread(target=target, name=f"shard-{shard}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.server.serve_forever(self._stop, serving=self.serving)

    def _report(self) -> None:
        every_s = self.config.worker.observability.shard_metrics_every_s
        run_reporter(self._stop, lambda: self.replica, every_s)

    def _get_ready(self) -> None:
        """Try until the replica is ready; ask for a build when only a build can help."""
        replica = self.replica
        assert replica is not None
        wait = 0.5
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if replica.recover():
                    logger.info(
                        "shard %d: ready in %.2fs", self.config.shard, time.monotonic() - started
                    )
                    return
            except NotCovered:
                if self.request_build is not None:
                    self.request_build(self.config.shard)
            except redis.RedisError as exc:
                replica.reason = f"Redis unreachable: {exc}"
            self._stop.wait(wait)
            wait = min(wait * 2, self.config.retry_max_s)

    def _heartbeat(self) -> None:
        """Say who we are, what we cover and whether we serve, until stopped."""
        while not self._stop.is_set():
            self._beat()
            self._stop.wait(self.config.heartbeat_s)

    def _beat(self) -> None:
        replica = self.replica
        if replica is None:
            return
        try:
            beat(self.client, replica.state(), self.config.member_ttl_s)
        except redis.RedisError as exc:
            logger.warning("shard %d: heartbeat failed: %s", self.config.shard, exc)

    def _follow(self) -> None:
        """Get ready, apply the log as it grows; now and then, check coverage and builds."""
        replica = self.replica
        assert replica is not None
        use_search_threads(self.config.worker.index.search_threads)
        next_check = 0.0
        folding = False
        while not self._stop.is_set():
            if not replica.ready:
                self.serving.clear()
                self._beat()  # the web stops sending here now, not at the next beat
                self._get_ready()
                if replica.ready:
                    self.serving.set()
                    self._beat()
                continue
            replica.poll_once(block_ms=None if folding else 200)  # no wait mid-fold
            folding = False
            try:  # upkeep must never stop the log: log a failure, keep serving
                shard = replica.shard
                rest = fold_step(shard) if shard is not None else None
                if rest is not None:  # a graph's exact delta, a chunk at a time
                    folding = True
                    self._stop.wait(rest)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.config.build_check_s
                    if not replica.check_coverage():
                        continue
                    self.swap_to_new_build()
                    self.upkeep.run(replica)
            except Exception:
                logger.exception("shard %d: upkeep failed", self.config.shard)

    def swap_to_new_build(self) -> bool:
        """Move to the newest published build if this replica is not on it yet."""
        replica = self.replica
        assert replica is not None
        try:
            pointer = current_build(self.client, self.config.shard)
        except redis.RedisError:
            return False
        if pointer is None or pointer.build_id == replica.build_id:
            return False
        return replica.swap_to_build(pointer)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish in-flight requests, stop following the log, publish a snapshot, leave."""
        self._stop.set()
        self.serving.clear()
        for thread in self._threads:
            thread.join(timeout)
        replica = self.replica
        if replica is None:
            return
        try:
            leave(self.client, self.config.shard, replica.name)
            if replica.shard is not None and replica.ready:
                artifact = replica.publish_snapshot()
                if artifact is not None:
                    logger.info("shard %d: published %s", self.config.shard, artifact.uri)
        except Exception:  # a stop must finish: the store or Redis may be gone
            logger.exception("shard %d: could not publish a last snapshot", self.config.shard)
