"""Shard gauges from a real replica following a real log; RPC metrics of a real round trip."""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path

import faiss
import numpy as np
import pytest
import redis
from prometheus_client import REGISTRY

from workers.index.artifacts import ArtifactStore
from workers.index.log import UpdateLog
from workers.index.replica import ShardReplica
from workers.index.types import VectorAttrs
from workers.observability.logs import RequestIdFilter
from workers.observability.shard_gauges import refresh
from workers.rpc.client import SearchClient
from workers.rpc.connection import connect
from workers.rpc.search import make_search_handler, shard_queue_key
from workers.rpc.server import RpcServer

MODEL, DIM = "obs-test", 16


@pytest.fixture(autouse=True)
def one_faiss_thread() -> None:
    faiss.omp_set_num_threads(1)


def upserts(log: UpdateLog, ids: np.ndarray, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    attrs = VectorAttrs.build(ids, ids % 7, (ids % 50).astype(np.float32), ids % 3 != 0)
    return log.append_upserts(ids, x, attrs)


def _replica(client: redis.Redis, shard: int, tmp_path: Path) -> ShardReplica:
    store = ArtifactStore((tmp_path / "store").as_uri())
    return ShardReplica(
        client, shard, MODEL, DIM, store=store, local_dir=tmp_path / "local", spec="Flat"
    )


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_shard_gauges_follow_the_replica(redis_client: redis.Redis, tmp_path: Path) -> None:
    shard = 41  # a shard number no other test uses: gauges are process-wide
    log = UpdateLog(redis_client, shard, MODEL, DIM)
    upserts(log, np.arange(200, dtype=np.int64))
    log.append_deletes(np.arange(10, dtype=np.int64))
    replica = _replica(redis_client, shard, tmp_path)
    replica.recover()

    values = refresh(replica)
    assert values["vectors"] == 190
    assert values["update_lag_s"] == 0.0  # caught up
    assert 0 <= values["last_applied_age_s"] < 60
    assert values["ready"] == 1.0
    assert value("vps_shard_ready", shard="41") == 1.0
    assert "snapshot_age_s" not in values  # nothing in the store yet
    assert math.isnan(values["nprobe"])  # a flat index has no nprobe
    assert value("vps_shard_vectors", shard="41") == 190
    assert value("vps_shard_removed_fraction", shard="41") == pytest.approx(
        values["removed_fraction"]
    )
    assert value("vps_shard_delta_size", shard="41") == values["delta_size"]

    # An entry the replica has not applied yet: the lag is its age.
    upserts(log, np.arange(200, 210, dtype=np.int64), seed=1)
    later = time.time() + 30
    values = refresh(replica, now=later)
    assert 29 <= values["update_lag_s"] <= 60
    assert value("vps_shard_update_lag_seconds", shard="41") == values["update_lag_s"]

    replica.catch_up()
    replica.publish_snapshot()
    values = refresh(replica, now=later)
    assert values["update_lag_s"] == 0.0
    assert values["vectors"] == 200
    assert 29 <= values["snapshot_age_s"] <= 60


def test_rpc_round_trip_is_measured_and_logged_under_its_trace_id(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shard = 0
    upserts(UpdateLog(redis_client, shard, MODEL, DIM), np.arange(300, dtype=np.int64))
    replica = _replica(redis_client, shard, tmp_path)
    replica.recover()
    server = RpcServer(
        connect(redis_url),
        shard_queue_key(shard),
        make_search_handler(replica.shard.search, shard=shard, dim=DIM),
        name="shard-0",
        slow_log_s=0.0,  # log every request
    )
    stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(stop,), daemon=True)
    before = {
        "batches": value("vps_rpc_batch_size_count", server="shard-0") or 0,
        "replies": value("vps_search_shard_reply_seconds_count", shard="0") or 0,
        "full": value("vps_search_queries_total", outcome="full") or 0,
        "partial": value("vps_search_partial_answers_total") or 0,
        "missed": value("vps_search_shard_missed_total", shard="1", reason="timeout") or 0,
    }
    caplog.set_level(logging.INFO, logger="workers.rpc.server")
    caplog.handler.addFilter(RequestIdFilter())  # as on every handler of the service
    thread.start()
    try:
        one = SearchClient(connect(redis_url), 1, timeout_s=2.0)
        query = np.ones((1, DIM), dtype=np.float32) / 4
        assert not one.search(query, 5, trace_id="trace-abc-1").partial
        # Two shards asked, one serves: a partial answer, shard 1 missed.
        two = SearchClient(connect(redis_url), 2, timeout_s=1.0)  # room for a busy box
        assert two.search(query, 5, trace_id="trace-abc-2").partial
    finally:
        stop.set()
        thread.join(5)

    assert value("vps_rpc_batch_size_count", server="shard-0") == before["batches"] + 2
    assert value("vps_search_shard_reply_seconds_count", shard="0") == before["replies"] + 2
    assert value("vps_search_queries_total", outcome="full") == before["full"] + 1
    assert value("vps_search_partial_answers_total") == before["partial"] + 1
    assert (
        value("vps_search_shard_missed_total", shard="1", reason="timeout") == before["missed"] + 1
    )
    lines = [r for r in caplog.records if r.name == "workers.rpc.server" and "took" in r.message]
    assert [r.request_id for r in lines] == ["trace-abc-1", "trace-abc-2"]
