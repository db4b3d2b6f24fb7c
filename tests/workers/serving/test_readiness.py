"""A real shard service behind the worker's metrics port: `GET /ready` says 503 and why
while no state the log continues exists, asks for a build, and turns 200 on its own
once one is published; the web then sends that shard searches."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import redis

from workers.encoding.registry import publish_model
from workers.index.artifacts import ArtifactStore
from workers.index.build_pointer import BuildPointer, publish_build
from workers.index.log import UpdateLog
from workers.index.membership import ready_shards
from workers.index.replica import ShardReplica
from workers.index.shard import Shard
from workers.index.types import VectorAttrs
from workers.observability.celery_worker import start_metrics_server
from workers.redis_process import free_port
from workers.rpc.client import SearchClient, ServedShards
from workers.serving.bootsteps import running_shards
from workers.serving.shard_service import ShardService, ShardServiceConfig

MODEL, DIM, SHARD = "ready-test", 16, 3


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return found


def vectors(ids: np.ndarray) -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((len(ids), DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def attrs_for(ids: np.ndarray) -> VectorAttrs:
    return VectorAttrs.build(ids, ids % 5, (ids % 40).astype(np.float32), ids % 2 == 0)


def test_ready_follows_what_the_replica_can_prove(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    publish_model(redis_client, MODEL, DIM, random_weights=False)
    log = UpdateLog(redis_client, SHARD, MODEL, DIM)
    ids = np.arange(1, 41, dtype=np.int64)
    x = vectors(ids)
    log.append_upserts(ids[:20], x[:20], attrs_for(ids[:20]))
    log.append_upserts(ids[20:], x[20:], attrs_for(ids[20:]))
    position = log.last_id()
    log.trim_before(position)  # the history is gone; the store is empty
    store_url = (tmp_path / "store").as_uri()

    asked: list[int] = []
    service = ShardService(
        ShardServiceConfig(
            redis_url=redis_url,
            shard=SHARD,
            index_dir=tmp_path / "local",
            store_url=store_url,
            spec="Flat",
            heartbeat_s=0.5,
            member_ttl_s=3.0,
            retry_max_s=1.0,
        ),
        request_build=asked.append,
    )
    port = free_port()
    server = start_metrics_server(port)
    running_shards[SHARD] = service
    service.start()
    try:
        ready_url = f"http://127.0.0.1:{port}/ready"
        status, _ = wait_for(lambda: (r := get(ready_url))[1]["shards"] and r)
        assert status == 503
        wait_for(lambda: "no artifact" in get(ready_url)[1]["shards"][str(SHARD)]["reason"])
        assert set(asked) == {SHARD}, "it asked for a build of its shard"
        assert SHARD not in ready_shards(redis_client, SHARD + 1)
        assert get(f"http://127.0.0.1:{port}/live")[0] == 200

        # A build covering the log's position appears in the store: ready by itself.
        built = Shard(DIM, MODEL, "Flat", work_dir=tmp_path / "build-work")
        built.upsert(ids, x, attrs_for(ids), model=MODEL)
        folder = built.snapshot(tmp_path / "build-out", position)
        artifact = ArtifactStore(store_url).publish(
            SHARD, folder, kind="build", build_id="b1", log_position=position, meta={}
        )
        publish_build(
            redis_client,
            SHARD,
            BuildPointer("b1", artifact.artifact_id, artifact.uri, position, "Flat"),
        )
        wait_for(lambda: get(ready_url)[0] == 200)
        ready = {"ready": True, "shards": {str(SHARD): {"ready": True, "reason": ""}}}
        assert get(ready_url)[1] == ready
        assert isinstance(service.replica, ShardReplica)
        assert service.replica.build_id == "b1"

        # The web now sends it searches, and gets the whole shard.
        wait_for(lambda: SHARD in ready_shards(redis_client, SHARD + 1))
        client = SearchClient(
            redis_client, SHARD + 1, timeout_s=5.0, served=ServedShards(redis_client, SHARD + 1)
        )
        gathered = client.search(x[7:8], k=3)
        assert gathered.answered == [SHARD]
        assert gathered.result.image_ids[0, 0] == ids[7]
        assert sorted(gathered.errors) == list(range(SHARD))  # nobody serves the others
    finally:
        running_shards.pop(SHARD, None)
        service.stop()
        server.shutdown()
    assert SHARD not in ready_shards(redis_client, SHARD + 1), "a clean stop leaves at once"


def test_an_unreachable_store_keeps_the_replica_not_ready_with_a_reason(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    store = ArtifactStore(
        "s3://nowhere/index",
        storage_options={
            "key": "k",
            "secret": "s",
            "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{free_port()}"},
            "config_kwargs": {"connect_timeout": 1, "retries": {"total_max_attempts": 1}},
        },
    )
    replica = ShardReplica(
        redis_client, 5, MODEL, DIM, store=store, local_dir=tmp_path, spec="Flat"
    )
    assert replica.recover() is False
    assert not replica.ready
    assert "store or Redis unreachable" in replica.reason
