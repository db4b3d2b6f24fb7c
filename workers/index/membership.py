"""Who serves a shard, as heartbeat keys that expire: a dead replica on any host drops out.

Each replica (and each index build in progress) writes its state to
``search:replica:<shard>:<name>`` with a TTL and scores its name in the sorted set
``search:replicas:<shard>`` by when that TTL runs out; a ready replica is also scored in
``search:ready:<shard>``, which the web reads to fan out only to shards someone serves.
Readers drop members whose time ran out, so nothing depends on a replica saying goodbye.
Times are wall-clock seconds: hosts are expected to keep their clocks in sync (NTP).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from workers.index.log import parse_id

logger = logging.getLogger(__name__)


def members_key(shard: int) -> str:
    return f"search:replicas:{int(shard)}"


def ready_key(shard: int) -> str:
    return f"search:ready:{int(shard)}"


def state_key(shard: int, name: str) -> str:
    return f"search:replica:{int(shard)}:{name}"


@dataclass(frozen=True)
class MemberState:
    """What one replica (or a build in progress) says of itself in its heartbeat."""

    name: str
    shard: int
    host: str
    pid: int
    role: str  # "replica" or "build"
    ready: bool
    reason: str  # why not ready ("" when ready)
    position: str  # the log position its state covers ("" while it holds none)
    vectors: int
    build_id: str
    updated: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> MemberState:
        """Parse and check a heartbeat value; ValueError on anything unexpected."""
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        fields = {
            "name": str,
            "shard": int,
            "host": str,
            "pid": int,
            "role": str,
            "ready": bool,
            "reason": str,
            "position": str,
            "vectors": int,
            "build_id": str,
            "updated": float,
        }
        values: dict[str, Any] = {}  # each value checked against its field's type below
        for name, kind in fields.items():
            value = data.get(name)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"field {name!r} is not {kind.__name__}")
            values[name] = value
        if values["position"]:
            parse_id(values["position"])  # raises ValueError on a malformed stream id
        if values["role"] not in ("replica", "build"):
            raise ValueError(f"unknown role {values['role']!r}")
        return cls(**values)


def beat(client: redis.Redis, state: MemberState, ttl_s: float) -> None:
    """Publish `state` for `ttl_s` seconds (one round trip)."""
    expires = time.time() + ttl_s
    pipe = client.pipeline(transaction=False)
    pipe.set(state_key(state.shard, state.name), state.to_json(), px=max(1, int(ttl_s * 1000)))
    pipe.zadd(members_key(state.shard), {state.name: expires})
    if state.ready:
        pipe.zadd(ready_key(state.shard), {state.name: expires})
    else:
        pipe.zrem(ready_key(state.shard), state.name)
    pipe.execute()


def leave(client: redis.Redis, shard: int, name: str) -> None:
    """Withdraw at once (a clean stop); a crash is covered by the TTL instead."""
    pipe = client.pipeline(transaction=False)
    pipe.delete(state_key(shard, name))
    pipe.zrem(members_key(shard), name)
    pipe.zrem(ready_key(shard), name)
    pipe.execute()


def live_members(client: redis.Redis, shard: int, now: float | None = None) -> list[MemberState]:
    """The members of `shard` whose heartbeat has not run out; malformed ones are skipped."""
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    pipe.zremrangebyscore(members_key(shard), "-inf", now)
    pipe.zremrangebyscore(ready_key(shard), "-inf", now)
    pipe.zrangebyscore(members_key(shard), now, "+inf")
    names = [_text(n) for n in pipe.execute()[2]]
    if not names:
        return []
    raws = client.mget([state_key(shard, name) for name in names])
    found = []
    for name, raw in zip(names, raws, strict=True):
        if raw is None:
            continue  # the state expired between the two reads
        try:
            state = MemberState.from_json(raw)
        except (ValueError, TypeError) as exc:
            logger.warning("shard %d: ignoring malformed heartbeat of %r: %s", shard, name, exc)
            continue
        if state.shard != shard or state.name != name:
            logger.warning("shard %d: ignoring heartbeat of %r naming another member", shard, name)
            continue
        found.append(state)
    return found


def ready_shards(client: redis.Redis, n_shards: int, now: float | None = None) -> set[int]:
    """The shards that have at least one live, ready replica (one round trip)."""
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    for shard in range(n_shards):
        pipe.zcount(ready_key(shard), now, "+inf")
    return {shard for shard, count in enumerate(pipe.execute()) if int(count) > 0}


def oldest_needed(members: list[MemberState]) -> str | None:
    """The oldest log position a live member still needs (None: no member)."""
    positions = [m.position for m in members if m.position]
    return min(positions, key=parse_id) if positions else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
