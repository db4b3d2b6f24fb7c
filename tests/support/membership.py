"""Heartbeats for RPC servers a test starts by hand, so the web asks their shards."""

from __future__ import annotations

import os
import time

import redis

from workers.index.membership import MemberState, beat


def serve_as_ready(client: redis.Redis, shard: int, ttl_s: float = 600.0) -> None:
    """Say that a ready replica of `shard` is live (for `ttl_s`, longer than any test)."""
    state = MemberState(
        name=f"test:{os.getpid()}:{shard}",
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
    beat(client, state, ttl_s)
