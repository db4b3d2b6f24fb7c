"""Two hosts that share only Redis, the database and the artifact store.

Each host is a group of real Celery workers with its own index directory, media root and
hostname (REPLICA_HOST). The store is a file:// folder, then a real S3-compatible server
(moto's server mode). Every scenario of the index lifecycle across hosts runs in order:
a replica on an empty disk, a build on one host, a replica killed on the other, both
snapshots corrupt, a shard nobody serves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from tests.support.indexing import (
    add_until_on_shard,
    all_indexed,
    expected_ids,
    live_ids,
    shards_match_database,
    wait,
)
from tests.support.processes import CeleryWorker, stop_together
from tests.support.s3 import s3_server
from workers.encoding.registry import published_model
from workers.index.artifacts import ArtifactStore
from workers.index.build_pointer import current_build
from workers.index.log import UpdateLog, parse_id
from workers.index.membership import MemberState, live_members, ready_shards
from workers.queues import Queue, shard_queue
from workers.rpc.client import SearchClient
from workers.rpc.connection import connect
from workers.rpc.search import shard_queue_key
from workers.tasks.maintenance import build_index
from workers.tasks.shards import shard_snapshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TTL_S = 4.0  # replica heartbeat TTL in this test: a dead replica is gone within it


@dataclass
class Host:
    """One machine: its own disk and hostname, the shared Redis, database and store."""

    name: str
    root: Path
    store_env: dict[str, str]

    def env(self) -> dict[str, str]:
        return {
            **self.store_env,
            "INDEX_DIR": str(self.root / "index"),
            "MEDIA_ROOT": str(self.root / "media"),
            "DATA_DIR": str(self.root / "data"),
            "REPLICA_HOST": self.name,
            "REPLICA_HEARTBEAT_S": "1",
            "REPLICA_TTL_S": str(TTL_S),
        }

    def worker(self, queues: list[str], redis_url: str, log_dir: Path) -> CeleryWorker:
        return CeleryWorker(queues, redis_url, log_dir, **self.env())

    def replica(self, shard: int, redis_url: str, log_dir: Path) -> CeleryWorker:
        return self.worker([shard_queue(shard)], redis_url, log_dir).start()


@pytest.fixture(scope="module", params=["file", "s3"])
def store(request, tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """(store URL, the environment a process needs to reach it)."""
    if request.param == "file":
        yield (tmp_path_factory.mktemp("store").as_uri(), {})
        return
    with s3_server(tmp_path_factory.mktemp("moto")) as server:
        yield (f"s3://{server.bucket}/index", server.env())


def members(client, shard: int) -> list[MemberState]:
    return [m for m in live_members(client, shard) if m.role == "replica"]


def ready_on(client, shard: int, host: str) -> MemberState | None:
    found = [m for m in members(client, shard) if m.host == host and m.ready]
    return found[0] if found else None


def publish(shard: int) -> str:
    """Publish the shard's state from one of its replicas; the artifact's URI."""
    return shard_snapshot.apply_async(args=[shard], queue=shard_queue(shard)).get(timeout=60)


def corrupt_every_artifact(store_url: str, store_env: dict[str, str], shard: int) -> int:
    """Flip the second half of every file of every artifact of `shard` in the store."""
    artifacts = ArtifactStore(store_url).list(shard)
    for artifact in artifacts:
        for name in artifact.files:
            if store_url.startswith("file://"):
                path = Path(urlparse(artifact.uri).path) / name
                data = bytearray(path.read_bytes())
                data[len(data) // 2 :] = b"\x00" * (len(data) - len(data) // 2)
                path.write_bytes(bytes(data))
            else:
                import boto3

                bucket, _, prefix = artifact.uri.removeprefix("s3://").partition("/")
                s3 = boto3.client("s3", endpoint_url=store_env["AWS_ENDPOINT_URL"])
                s3.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=b"\x00" * 64)
    return len(artifacts)


def answers(client: SearchClient, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(product ids, scores) of the top 10 of each query, asked one at a time."""
    ids, scores = [], []
    for q in queries:
        gathered = client.search(q[None, :], k=10)
        assert not gathered.partial, gathered.errors
        ids.append(gathered.result.product_ids[0])
        scores.append(gathered.result.scores[0])
    return np.stack(ids), np.stack(scores)


def same_answers(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> bool:
    """The same products in the same order; scores equal up to float summation order."""
    return bool(np.array_equal(got[0], want[0]) and np.allclose(got[1], want[1], atol=1e-5))


def test_replicas_on_two_hosts(
    store, encode_worker, redis_url, worker_logs, settings, tmp_path, api_client, monkeypatch
):
    assert settings.SEARCH_SHARDS == 2
    store_url, store_env = store
    for key, value in store_env.items():
        monkeypatch.setenv(key, value)
    settings.INDEX_STORE_URL = store_url
    client = connect(redis_url)
    a = Host("host-a", tmp_path / "a", store_env)
    b = Host("host-b", tmp_path / "b", store_env)
    started: list[CeleryWorker] = []

    def start(worker: CeleryWorker) -> CeleryWorker:
        started.append(worker)
        return worker

    try:
        # Host A's index worker and replicas load side by side.
        first = [[Queue.INDEX.value], [shard_queue(0)], [shard_queue(1)]]
        _, a0, a1 = [start(a.worker(queues, redis_url, worker_logs).launch()) for queues in first]
        for worker in started:
            worker.ready()
        # Two waves, so that shard 0's log has entries behind the first snapshot to trim:
        # an encode batch takes every pending product, and a slow first batch took all 16.
        ids = add_until_on_shard(0, "MH", 0, at_least=8)
        wait(all_indexed, what="the first products to be encoded")
        ids += add_until_on_shard(0, "MH", len(ids), at_least=8)
        wait(all_indexed, what="the second wave to be encoded")
        wait(shards_match_database, what="host A's replicas to hold them")
        model, dim = published_model(client)
        log0 = UpdateLog(client, 0, model, dim)

        # Host A publishes shard 0; the log behind that snapshot is trimmed, so the log
        # alone no longer holds the whole shard.
        assert publish(0)
        assert log0.trimmed_through() != "0-0"
        ids += add_until_on_shard(0, "MH", len(ids), at_least=8)  # only in the log
        wait(all_indexed, what="more products to be encoded")
        wait(shards_match_database, what="host A's replicas to hold them")

        rpc = SearchClient(client, settings.SEARCH_SHARDS, timeout_s=5.0)
        queries = np.random.default_rng(7).standard_normal((100, dim)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        before = answers(rpc, queries)

        # 1. A replica on host B's empty disk: ready only with the whole shard.
        started_at = time.monotonic()
        b0 = start(b.replica(0, redis_url, worker_logs))
        wait(lambda: ready_on(client, 0, "host-b"), what="host B's replica to be ready")
        b_ready_s = time.monotonic() - started_at
        state = ready_on(client, 0, "host-b")
        assert state is not None
        assert state.vectors == len(expected_ids(0))
        a0.stop()  # only host B serves shard 0 now
        wait(lambda: not ready_on(client, 0, "host-a"), what="host A's replica to leave")
        assert live_ids(0) == expected_ids(0)
        assert same_answers(answers(rpc, queries), before), "host B answers as host A did"

        # 2. A build made on host A is taken by every replica on both hosts.
        a0 = start(a.replica(0, redis_url, worker_logs))
        wait(lambda: ready_on(client, 0, "host-a"), what="host A's replica to come back")
        built = build_index.apply_async(args=[0], queue=Queue.INDEX.value).get(timeout=120)
        build_id = built[0]["build_id"]
        assert current_build(client, 0).build_id == build_id

        def all_on_build() -> bool:
            found = members(client, 0)
            return len(found) == 2 and all(m.ready and m.build_id == build_id for m in found)

        wait(all_on_build, what="both hosts' replicas to swap to the build")
        assert same_answers(answers(rpc, queries), before), "the build serves the same shard"

        # 3. kill -9 of host B's replica releases the trim floor within the TTL.
        pinned = ready_on(client, 0, "host-b").position
        killed_at = time.monotonic()
        b0.kill()
        wait(lambda: not ready_on(client, 0, "host-b"), timeout=TTL_S + 10, what="B to expire")
        expired_s = time.monotonic() - killed_at
        for _ in range(2):  # two snapshots after B's position: retention keeps two
            ids += add_until_on_shard(0, "MH", len(ids))
            wait(all_indexed, what="updates after host B died")
            wait(shards_match_database, what="host A's replicas to hold them")
            assert publish(0)
        # B's entry itself is gone: alive, B would have kept the log from its position on
        assert parse_id(log0.trimmed_through()) >= parse_id(pinned), "B still holds the log"

        # 4. Every artifact of shard 0 corrupt: not ready, a rebuild, whole again by itself.
        a0.kill()
        assert corrupt_every_artifact(store_url, store_env, 0) >= 2
        cache = a.root / "index" / "shard-0" / "cache"
        for path in sorted(cache.rglob("*"), reverse=True):  # a fresh disk on host A
            path.unlink() if path.is_file() else path.rmdir()
        old_build = build_id
        restarted_at = time.monotonic()
        a0 = start(a.replica(0, redis_url, worker_logs))
        wait(
            lambda: (m := ready_on(client, 0, "host-a")) is not None and m.build_id != old_build,
            timeout=120,
            what="host A's replica to be ready on a rebuilt shard",
        )
        rebuilt_s = time.monotonic() - restarted_at
        assert "refusing artifact" in a0.log()
        assert "not ready: no artifact in the store is continued by the log" in a0.log()
        assert "queued a rebuild" in a0.log()
        assert live_ids(0) == expected_ids(0)
        assert len(answers(rpc, queries[:10])[0]) == 10  # whole answers again

        # 5. A shard nobody serves: searches skip it (nothing is queued for it) and say so.
        a1.kill()
        wait(lambda: 1 not in ready_shards(client, 2), timeout=TTL_S + 10, what="A1 to expire")
        time.sleep(1.5)  # the web's cached view of who is ready refreshes every second
        queued = client.llen(shard_queue_key(1))
        for _ in range(5):
            response = api_client.get("/api/search/", {"q": "item", "k": 5})
            assert response.status_code == 200, response.content
            assert response.json()["shards"] == {"answered": 1, "total": 2, "missing": [1]}
        assert client.llen(shard_queue_key(1)) == queued, "no request waited for shard 1"
    finally:
        stop_together(started)

    print(
        f"\n[{store_url.split(':')[0]}] empty-disk replica ready in {b_ready_s:.1f}s; "
        f"killed replica expired in {expired_s:.1f}s (TTL {TTL_S:.0f}s); "
        f"all artifacts corrupt: rebuilt and ready in {rebuilt_s:.1f}s"
    )
