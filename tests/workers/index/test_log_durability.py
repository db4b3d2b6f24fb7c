"""Update log appends that wait for replicas (REDIS_MIN_REPLICAS_ACK): the refusal, here on
the session's Redis, which has no replica. Appends acknowledged by a real replica across a
failover: tests/workers/rpc/test_sentinel_failover.py."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis

from tests.workers.index.conftest import DIM, attrs_for, random_vectors
from workers.index.log import Durability, NotReplicated, UpdateLog

MODEL = "clip-test"


def test_without_a_replica_an_append_that_wants_one_fails_clearly(redis_client: redis.Redis):
    log = UpdateLog(redis_client, 0, MODEL, DIM, durability=Durability(1, timeout_ms=50))
    ids = np.array([1, 2], dtype=np.int64)
    started = time.monotonic()
    with pytest.raises(NotReplicated) as refused:
        log.append_upserts(ids, random_vectors(2), attrs_for(ids))
    assert 0.04 < time.monotonic() - started < 2.0  # it waited for WAIT's timeout, no longer
    message = str(refused.value)
    assert "reached 0 of the 1 replica(s) required within 50 ms" in message
    assert "REDIS_MIN_REPLICAS_ACK" in message
    # The master has the entry: an append again (the task's retry) is what makes it safe.
    assert refused.value.entry_id == log.last_id()
    assert isinstance(refused.value, redis.RedisError)

    with pytest.raises(NotReplicated):
        log.append_deletes(np.array([1], dtype=np.int64))


def test_no_wait_by_default(redis_client: redis.Redis):
    log = UpdateLog(redis_client, 1, MODEL, DIM)
    assert log.durability == Durability(0, 500)
    entry = log.append_deletes(np.array([3], dtype=np.int64))
    assert [e.entry_id for e in log.read()] == [entry]


@pytest.mark.parametrize(("replicas", "timeout_ms"), [(-1, 500), (1, 0)])
def test_durability_is_checked(replicas, timeout_ms):
    with pytest.raises(ValueError, match="min_replicas must be 0 or more"):
        Durability(replicas, timeout_ms)
