"""Replica heartbeats in a real Redis: expiry, readiness, and hostile values ignored."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict

import pytest
import redis

from tests.support.membership import member_state
from workers.index.membership import (
    MemberState,
    beat,
    leave,
    live_members,
    members_key,
    oldest_needed,
    ready_shards,
    state_key,
)


def member(name: str, shard: int = 0, **changes: object) -> MemberState:
    return member_state(name, shard, **{"host": "h", "position": "5-0", "vectors": 10, **changes})


def test_members_expire_and_readiness_follows(redis_client: redis.Redis) -> None:
    beat(redis_client, member("a", position="9-0"), ttl_s=60)
    beat(redis_client, member("b", ready=False, reason="replaying", position="3-0"), ttl_s=0.3)
    beat(redis_client, member("c", shard=1), ttl_s=60)
    assert {m.name for m in live_members(redis_client, 0)} == {"a", "b"}
    assert ready_shards(redis_client, 3) == {0, 1}
    assert oldest_needed(live_members(redis_client, 0)) == "3-0"

    time.sleep(0.5)  # b's heartbeat ran out: it neither counts nor holds the floor
    assert [m.name for m in live_members(redis_client, 0)] == ["a"]
    assert oldest_needed(live_members(redis_client, 0)) == "9-0"

    beat(redis_client, member("a", ready=False, reason="trimmed past"), ttl_s=60)
    assert ready_shards(redis_client, 3) == {1}
    leave(redis_client, 1, "c")
    assert ready_shards(redis_client, 3) == set()
    assert live_members(redis_client, 1) == []


def test_a_member_without_a_position_holds_no_floor(redis_client: redis.Redis) -> None:
    beat(redis_client, member("a", ready=False, reason="no state", position=""), ttl_s=60)
    assert oldest_needed(live_members(redis_client, 0)) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({**asdict(member("x")), "vectors": "many"}).encode(),
        json.dumps({**asdict(member("x")), "ready": 1}).encode(),
        json.dumps({**asdict(member("x")), "position": "0-0; DROP"}).encode(),
        json.dumps({**asdict(member("x")), "role": "king"}).encode(),
        json.dumps({**asdict(member("x")), "name": "someone-else"}).encode(),
        json.dumps({**asdict(member("x")), "shard": 9}).encode(),
        b"\xff\xfe",
    ],
)
def test_malformed_heartbeats_are_ignored_with_a_log_line(
    redis_client: redis.Redis, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    beat(redis_client, member("good", position="7-0"), ttl_s=60)
    redis_client.zadd(members_key(0), {"x": time.time() + 60})
    redis_client.set(state_key(0, "x"), raw, ex=60)
    with caplog.at_level(logging.WARNING, logger="workers.index.membership"):
        found = live_members(redis_client, 0)
    assert [m.name for m in found] == ["good"]
    assert oldest_needed(found) == "7-0"  # a hostile value cannot pin the trim floor
    assert "ignoring" in caplog.text
