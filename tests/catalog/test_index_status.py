"""`index_status`: replicas from their heartbeats, the log and the store, as a table or JSON."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from django.core.management import call_command

from tests.support.membership import member_state
from workers.encoding.registry import publish_model
from workers.index.artifacts import ArtifactStore
from workers.index.log import UpdateLog
from workers.index.membership import beat
from workers.index.shard import Shard
from workers.index.types import VectorAttrs

MODEL, DIM = "status-test", 8


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("index_status", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def one_shard_served(redis_client, settings, tmp_path):
    settings.SEARCH_SHARDS = 2
    settings.INDEX_STORE_URL = (tmp_path / "store").as_uri()
    publish_model(redis_client, MODEL, DIM, random_weights=False)
    log = UpdateLog(redis_client, 0, MODEL, DIM)
    ids = np.arange(1, 31, dtype=np.int64)
    x = np.eye(30, DIM, dtype=np.float32) + 0.01
    attrs = VectorAttrs.build(ids, ids % 3, ids.astype(np.float32), ids % 2 == 0)
    log.append_upserts(ids, x, attrs)
    position = log.last_id()
    shard = Shard(DIM, MODEL, "Flat", work_dir=tmp_path / "work")
    shard.upsert(ids, x, attrs, model=MODEL)
    folder = shard.snapshot(tmp_path / "out", position)
    artifact = ArtifactStore(settings.INDEX_STORE_URL).publish(
        0, folder, kind="snapshot", build_id="initial", log_position=position, meta={}
    )
    for name, ready, reason in (("a:1:0", True, ""), ("b:2:0", False, "replaying the log")):
        state = member_state(
            name,
            host=name.split(":")[0],
            ready=ready,
            reason=reason,
            position=position if ready else "",
            vectors=30 if ready else 0,
            build_id="initial",
        )
        beat(redis_client, state, ttl_s=60)
    return position, artifact


def test_json_has_every_replica_the_log_and_the_store(one_shard_served):
    position, artifact = one_shard_served
    shard0, shard1 = json.loads(run("--json"))
    assert [r["name"] for r in shard0["replicas"]] == ["a:1:0", "b:2:0"]
    ready, replaying = shard0["replicas"]
    assert ready == {
        "name": "a:1:0",
        "host": "a",
        "role": "replica",
        "ready": True,
        "reason": "",
        "vectors": 30,
        "build_id": "initial",
        "position": position,
    }
    assert replaying["ready"] is False
    assert replaying["reason"] == "replaying the log"
    assert shard0["ready_replicas"] == 1
    assert shard0["log"]["length"] == 1
    assert shard0["log"]["first"] == shard0["log"]["last"] == position
    assert shard0["log"]["trim_floor"] == position
    assert shard0["store"]["newest"] == artifact.artifact_id
    assert shard1["replicas"] == []
    assert shard1["ready_replicas"] == 0


def test_the_table_reads_as_counts_and_reasons(one_shard_served):
    text = run()
    lines = text.splitlines()
    assert lines[0].split() == [
        "shard",
        "replica",
        "host",
        "ready",
        "vectors",
        "build",
        "position",
        "reason",
    ]
    assert any(line.split()[:5] == ["0", "a:1:0", "a", "yes", "30"] for line in lines)
    assert any("replaying the log" in line for line in lines)
    assert any(line.startswith("1") and "no live replica" in line for line in lines)
    assert ".0 " not in text
