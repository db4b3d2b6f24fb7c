"""Which build generation a shard serves, kept in Redis so every replica on every host finds it.

A build is published to the artifact store first; then its pointer (build id, artifact
id and URI, the log position it covers, its spec) is set here. Each replica notices a new
build id, fetches that generation's newest covering artifact, replays the log from its
position and swaps it in; a replica started later does the same. Without a pointer (a
Redis that lost it) the newest build artifact in the store is the current generation.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import redis

from workers.index.log import parse_id

logger = logging.getLogger(__name__)

# The generation of a shard that never had a build: its state comes from the log alone.
INITIAL_BUILD = "initial"


def build_key(shard: int) -> str:
    return f"search:index:build:{int(shard)}"


def build_requested_key(shard: int) -> str:
    """Set (with a TTL) while a rebuild some replica asked for is queued or running."""
    return f"search:index:build-requested:{int(shard)}"


@dataclass(frozen=True)
class BuildPointer:
    build_id: str
    artifact_id: str
    uri: str
    log_position: str
    spec: str


def publish_build(client: redis.Redis, shard: int, pointer: BuildPointer) -> None:
    stored = dataclasses.fields(pointer)
    client.hset(build_key(shard), mapping={f.name: getattr(pointer, f.name) for f in stored})


def current_build(client: redis.Redis, shard: int) -> BuildPointer | None:
    """The newest published build of `shard`, or None (also for a malformed record)."""
    fields = client.hgetall(build_key(shard))
    if not fields:
        return None
    try:
        pointer = BuildPointer(**{_text(k): _text(v) for k, v in fields.items()})
        parse_id(pointer.log_position)
    except (TypeError, ValueError, UnicodeDecodeError) as exc:
        logger.warning("shard %d: ignoring malformed build pointer: %s", shard, exc)
        return None
    return pointer


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
