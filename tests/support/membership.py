"""Heartbeats for tests: member states, and RPC servers a test starts by hand made visible
to the web as ready replicas."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import redis

from workers.index.membership import MemberState, beat


def member_state(name: str, shard: int = 0, **changes: object) -> MemberState:
    """A ready replica's heartbeat, with `changes` applied."""
    state = MemberState(
        name=name,
        shard=shard,
        host="test",
        pid=os.getpid(),
        role="replica",
        ready=True,
        reason="",
        position="0-0",
        vectors=0,
        build_id="test",
        updated=time.time(),
    )
    return replace(state, **changes)


def serve_as_ready(client: redis.Redis, shard: int, ttl_s: float = 600.0) -> None:
    """Say that a ready replica of `shard` is live (for `ttl_s`, longer than any test)."""
    beat(client, member_state(f"test:{os.getpid()}:{shard}", shard), ttl_s)
