"""The workers' reconcile_digest command on real shards and the session's Redis (no Celery:
the command is called as the worker's control panel calls it)."""

from __future__ import annotations

import types

import numpy as np

from tests.workers.index.conftest import attrs_for, random_vectors
from workers.index.digest import Digest
from workers.index.shard import Shard
from workers.serving import bootsteps
from workers.serving.control import DigestAnswer, answers_key, reconcile_digest

REQUEST = "0123abcd" * 4


def _service(redis_client, number: int, shard: Shard | None, ready: bool = True):
    replica = types.SimpleNamespace(
        shard=shard,
        shard_no=number,
        name=f"host-a:1{number}:{number}",
        host="host-a",
        ready=ready,
        reason="" if ready else "recovering",
        last_applied="7-0",
    )
    return types.SimpleNamespace(client=redis_client, replica=replica)


def test_every_replica_of_the_worker_writes_its_digest_and_answer(
    redis_client, monkeypatch, tmp_path
) -> None:
    shard = Shard(16, "m", "Flat", work_dir=tmp_path)
    ids = np.arange(10, 60, dtype=np.int64)
    shard.upsert(ids, random_vectors(len(ids)), attrs_for(ids))
    running = {
        0: _service(redis_client, 0, shard),
        1: _service(redis_client, 1, None, ready=False),  # still loading: answers, no digest
        2: _service(redis_client, 2, shard),  # not asked for
    }
    monkeypatch.setattr(bootsteps, "running_shards", running)

    reply = reconcile_digest(None, request=REQUEST, shards=[0, 1])

    assert reply == {"ok": {"0": 50, "1": 0}}
    answers = [
        DigestAnswer.from_json(raw) for raw in redis_client.lrange(answers_key(REQUEST), 0, -1)
    ]
    assert [(a.shard, a.rows, a.ready) for a in answers] == [(0, 50, True), (1, 0, False)]
    assert answers[0].replica == "host-a:10:0"
    assert answers[0].position == "7-0"
    assert answers[1].key == ""
    digest = Digest.from_bytes(redis_client.get(answers[0].key))
    expected = Digest.of(ids, attrs_for(ids))
    np.testing.assert_array_equal(digest.ids, expected.ids)
    np.testing.assert_array_equal(digest.hashes, expected.hashes)
    assert 0 < redis_client.ttl(answers[0].key) <= 600


def test_a_malformed_request_is_refused(redis_client, monkeypatch) -> None:
    monkeypatch.setattr(bootsteps, "running_shards", {})
    assert "error" in reconcile_digest(None, request="../../etc")
    assert reconcile_digest(None, request=REQUEST) == {"ok": {}}
