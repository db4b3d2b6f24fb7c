"""Pointers to rebuilt shard indexes, kept in Redis so every replica of a shard finds them.

A build writes its index as a snapshot directory, then publishes (path, log position,
build id) here. Each replica notices a new build id, loads it, replays the log from
the build's position and swaps it in; a replica started later does the same, so a
build reaches replicas that were down when it finished.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis


def build_key(shard: int) -> str:
    return f"search:index:build:{int(shard)}"


@dataclass(frozen=True)
class BuildPointer:
    build_id: str
    path: str
    log_position: str
    spec: str

    def to_mapping(self) -> dict[str, str]:
        return {
            "build_id": self.build_id,
            "path": self.path,
            "log_position": self.log_position,
            "spec": self.spec,
        }


def publish_build(client: redis.Redis, shard: int, pointer: BuildPointer) -> None:
    client.hset(build_key(shard), mapping=pointer.to_mapping())


def current_build(client: redis.Redis, shard: int) -> BuildPointer | None:
    """The newest published build of `shard`, or None (also for a malformed record)."""
    fields = client.hgetall(build_key(shard))
    try:
        return BuildPointer(**{k.decode(): v.decode() for k, v in fields.items()})
    except (TypeError, UnicodeDecodeError):
        return None
