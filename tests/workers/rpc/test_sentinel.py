"""Redis through Sentinel, for real: a master, a replica and three sentinels (all with
passwords) started by each test on free ports (tests/support/sentinel.py).

Every Redis user of the project (the RPC client and a shard's serving loop, the update
log, the Django cache, Celery's broker and result backend) reaches the master through a
redis+sentinel:// URL, keeps working after the master is killed or switched over, and
loses no update log entry acknowledged with REDIS_MIN_REPLICAS_ACK.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import redis
from celery import Celery
from django.conf import settings
from django.core.cache.backends.redis import RedisCache

from tests.support.sentinel import DataNode, SentinelCluster
from tests.workers.rpc.conftest import Servers, make_shards, unit_vectors
from workers.index.log import START, Durability, UpdateLog, log_key
from workers.redis_process import free_port
from workers.rpc.client import SearchClient
from workers.rpc.connection import ThreadConnections, connect, send_commands
from workers.rpc.redis_url import celery_url, redis_from_url
from workers.rpc.search import make_search_handler, shard_queue_key

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

QUEUE = "sentinel-test"
KINDS = ("log", "search", "cache", "celery")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    running = SentinelCluster(tmp_path).start()
    yield running
    running.stop()


def celery_app(url: str) -> Celery:
    """A Celery app configured the way settings.py configures the project's from one URL."""
    broker, broker_options = celery_url(url)
    backend, backend_options = celery_url(url)
    app = Celery(f"sentinel-test-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(
        broker_url=broker,
        broker_transport_options=broker_options,
        result_backend=backend,
        result_backend_transport_options=backend_options,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
    )
    return app


def project_cache(url: str) -> RedisCache:
    """The Django cache as settings.CACHES builds it, on `url`."""
    config = settings.CACHES["default"]
    return RedisCache([url], {"OPTIONS": dict(config["OPTIONS"]), "KEY_PREFIX": "t"})


def queued_task_ids(node: DataNode) -> set[str]:
    client = node.client()
    try:
        return {json.loads(raw)["headers"]["id"] for raw in client.lrange(QUEUE, 0, -1)}
    finally:
        client.close()


def test_every_client_reaches_the_master_through_sentinel(cluster: SentinelCluster):
    url = cluster.url()
    master = cluster.node(cluster.master_port())

    client = redis_from_url(url, socket_timeout=2.0)
    client.set("greeting", "hello")
    assert master.client().get("greeting") == b"hello"  # the master itself has it

    rpc = connect(url)
    assert ThreadConnections.of(rpc).send(("GET", "greeting")) == [b"hello"]

    # A connection that lost its server reconnects through Sentinel. redis-py 8 reconnects
    # inside send_packed_command without asking Sentinel: to the address the connection
    # last had (here a closed port) or, never connected, to localhost:6379.
    stale = rpc.connection_pool.make_connection()
    stale.host, stale.port = "127.0.0.1", free_port()
    assert send_commands(stale, (("GET", "greeting"),)) == [b"hello"]
    assert stale.port == master.port
    stale.disconnect()

    cache = project_cache(url)
    cache.set("card", {"id": 7}, 30)
    assert cache.get("card") == {"id": 7}

    app = celery_app(url)
    sent = app.send_task("tests.noop", args=[1], queue=QUEUE, ignore_result=True)
    assert queued_task_ids(master) == {sent.id}
    app.backend.store_result("done-1", {"n": 1}, "SUCCESS")
    assert app.AsyncResult("done-1").get(timeout=5) == {"n": 1}
    app.close()


@dataclass
class Traffic:
    """One call of each kind per step, each recorded with its time and outcome."""

    url: str
    servers: Servers
    durability: Durability
    events: list[tuple[float, str, bool, str]] = field(default_factory=list)
    acked_entries: list[str] = field(default_factory=list)
    sent_tasks: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        (shard,) = make_shards(1, n=200)
        self.server = self.servers.start(
            shard_queue_key(0), make_search_handler(shard.search, shard=0)
        )
        # Options as catalog/redis_clients.py and catalog/search.py build their clients.
        self.client = redis_from_url(self.url, socket_timeout=5.0, socket_connect_timeout=2.0)
        self.log = UpdateLog(self.client, 0, "m", 0, durability=self.durability)
        self.rpc = connect(self.url)
        self.search = SearchClient(self.rpc, n_shards=1, timeout_s=0.5)
        self.query = unit_vectors(1, seed=3)
        self.cache = project_cache(self.url)
        self.celery = celery_app(self.url)
        self.calls: dict[str, Callable[[int], None]] = {
            "log": self._log,
            "search": self._search,
            "cache": self._cache,
            "celery": self._celery,
        }

    def _log(self, i: int) -> None:
        entry = self.log.append_deletes(np.array([i], dtype=np.int64))
        self.acked_entries.append(entry)  # returned: acknowledged by the master and a replica
        assert self.log.last_id() == entry

    def _search(self, i: int) -> None:
        answer = self.search.search(self.query, k=5)
        assert answer.answered == [0]

    def _cache(self, i: int) -> None:
        self.cache.set(f"step:{i}", i, 60)
        self.cached.append(self.cache.make_key(f"step:{i}"))
        assert self.cache.get(f"step:{i}") == i

    def _celery(self, i: int) -> None:
        sent = self.celery.send_task("tests.noop", args=[i], queue=QUEUE, ignore_result=True)
        self.sent_tasks.append(sent.id)

    def step(self, i: int) -> None:
        for kind, call in self.calls.items():
            try:
                call(i)
            except Exception as exc:  # any failure is an outage of this kind; recorded
                self.events.append((time.monotonic(), kind, False, type(exc).__name__))
            else:
                self.events.append((time.monotonic(), kind, True, ""))

    def run(self, until: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        i = len(self.events)
        while not until():
            assert time.monotonic() < deadline, self.summary(0.0)
            self.step(i)
            i += 1
            time.sleep(0.02)

    def healthy_since(self, since: float, seconds: float) -> bool:
        """Every kind answered, without a failure, for the last `seconds` (after `since`)."""
        now = time.monotonic()
        recent = [e for e in self.events if e[0] >= max(since, now - seconds)]
        return (
            now - since >= seconds
            and all(ok for _, _, ok, _ in recent)
            and {kind for _, kind, _, _ in recent} == set(KINDS)
        )

    def gap(self, kind: str, since: float) -> float:
        """Seconds from `since` to the first success of `kind` after a failure, else 0."""
        after = [e for e in self.events if e[1] == kind and e[0] >= since]
        if all(ok for _, _, ok, _ in after):
            return 0.0
        first_failure = next(i for i, e in enumerate(after) if not e[2])
        recovered = next((e[0] for e in after[first_failure:] if e[2]), float("inf"))
        return recovered - since

    def errors(self, kind: str, since: float) -> list[str]:
        return sorted({e[3] for e in self.events if e[1] == kind and e[0] >= since and not e[2]})

    def summary(self, since: float) -> str:
        return "; ".join(
            f"{kind}: gap {self.gap(kind, since):.2f}s {self.errors(kind, since)}" for kind in KINDS
        )

    def losses(self, master: DataNode) -> str:
        """What the master kept of the writes with no WAIT (cache sets, Celery sends)."""
        client = master.client()
        try:
            cached = sum(1 for key in self.cached if not client.exists(key))
        finally:
            client.close()
        kept = queued_task_ids(master)
        sent = sum(1 for task in self.sent_tasks if task not in kept)
        return (
            f"lost {cached} of {len(self.cached)} cache sets, "
            f"{sent} of {len(self.sent_tasks)} Celery sends"
        )

    def close(self) -> None:
        self.celery.close()
        self.client.close()


@pytest.fixture
def traffic(cluster: SentinelCluster, request: pytest.FixtureRequest) -> Iterator[Traffic]:
    """Traffic whose update log appends wait for `request.param` replicas (default 1)."""
    servers = Servers(cluster.url())
    running = Traffic(cluster.url(), servers, Durability(getattr(request, "param", 1), 500))
    yield running
    servers.stop_all()
    running.close()


def _connection_ports(traffic: Traffic) -> set[int]:
    """Where the RPC client's and the serving loop's raw connections point now."""
    thread_conn = ThreadConnections.of(traffic.rpc)._local.conn
    return {thread_conn.port, traffic.server._conn.port}


def test_killed_master_calls_resume_by_themselves_and_no_acknowledged_entry_is_lost(
    cluster: SentinelCluster, traffic: Traffic
):
    traffic.run(lambda: len(traffic.events) >= 20 * len(KINDS), timeout=20)
    assert all(ok for _, _, ok, _ in traffic.events), traffic.summary(0.0)
    old = cluster.node(cluster.master_port())
    assert _connection_ports(traffic) == {old.port}

    killed_at = time.monotonic()
    old.kill()  # SIGKILL: no goodbye to clients, replica or sentinels
    traffic.run(lambda: traffic.healthy_since(killed_at, 1.5), timeout=40)
    new = cluster.node(cluster.master_port())
    assert new.port != old.port
    gaps = {kind: traffic.gap(kind, killed_at) for kind in KINDS}
    print(f"\nkill -9 of the master: {traffic.summary(killed_at)}")
    assert all(0 < gap < 15 for gap in gaps.values()), gaps

    # Back on the promoted replica, never on the dead address nor on localhost:6379.
    assert _connection_ports(traffic) == {new.port}
    client = new.client()
    stored = {raw.decode() for raw, _ in client.xrange(log_key(0))}
    client.close()
    assert set(traffic.acked_entries) <= stored, "an acknowledged update log entry was lost"
    assert traffic.log.read(START, count=10_000)  # and it reads back through Sentinel

    # Cache sets and Celery sends have no WAIT: what the failover kept is printed.
    print(f"kill -9 of the master: {traffic.losses(new)}")
    traffic.celery.backend.store_result("after-failover", 1, "SUCCESS")
    assert traffic.celery.AsyncResult("after-failover").get(timeout=5) == 1


@pytest.mark.parametrize("traffic", [2], indirect=True)
def test_switched_over_master_is_left_and_writes_to_it_are_refused(
    cluster: SentinelCluster, traffic: Traffic
):
    """SENTINEL FAILOVER: the old master lives on as a replica. Clients must move to the
    new master (not read a replica as if it were the master).

    Sentinel promotes a replica without pausing the old master, which takes writes (and
    its other replica acknowledges them) until the sentinels name the new master; they
    are then dropped. WAIT 1 let such appends through (entries were lost in a run of
    this test); waiting for every replica (2 here) refuses them instead."""
    traffic.run(lambda: len(traffic.events) >= 10 * len(KINDS), timeout=20)
    old = cluster.node(cluster.master_port())

    started = time.monotonic()
    cluster.failover()
    new = cluster.wait_promoted(old.port)
    traffic.run(lambda: traffic.healthy_since(started, 1.5), timeout=40)
    print(f"\nSENTINEL FAILOVER: {traffic.summary(started)}")
    gaps = {kind: traffic.gap(kind, started) for kind in KINDS}
    # WAIT 2 is met again once Sentinel has turned the old master into a replica (~10 s).
    assert gaps.pop("log") < 30
    assert all(gap < 5 for gap in gaps.values()), gaps
    assert _connection_ports(traffic) == {new.port}

    def demoted() -> bool:
        client = old.client()
        try:
            return client.info("replication")["role"] == "slave"
        finally:
            client.close()

    SentinelCluster.wait_until(demoted, 20, "the old master to follow the new one")
    resumed = time.monotonic()
    traffic.run(lambda: traffic.healthy_since(resumed, 0.5), timeout=10)
    client = new.client()
    stored = {raw.decode() for raw, _ in client.xrange(log_key(0))}
    client.close()
    assert set(traffic.acked_entries) <= stored, "an acknowledged update log entry was lost"
    print(f"SENTINEL FAILOVER: {traffic.losses(new)}")


def test_unreachable_sentinels_fail_fast_with_a_clear_error():
    url = f"redis+sentinel://:pw@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/vps"
    client = connect(url)
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError, match="No master found for 'vps'"):
        client.ping()
    assert time.monotonic() - started < 2.0
