"""Every shard's replicas, update log and store artifacts, read from Redis and the store.

What `index_status` prints and the admin's Search health page shows. Read-only; a part
that cannot be read (the store down, say) is reported as an error, not raised.
"""

from __future__ import annotations

from typing import Any

import redis
from django.conf import settings

from catalog.redis_clients import redis_client
from catalog.services.index_builds import index_store
from workers.encoding.registry import published_model
from workers.index.artifacts import ArtifactError
from workers.index.build_pointer import current_build
from workers.index.lifecycle import candidates, generation, trim_floor
from workers.index.log import UpdateLog
from workers.index.membership import live_members


def shard_overview(shard: int) -> dict[str, Any]:
    client = redis_client()
    store = index_store()
    model, dim = published_model(client) or ("", 0)
    log = UpdateLog(client, shard, model, dim)
    members = live_members(client, shard)
    row: dict[str, Any] = {
        "shard": shard,
        "replicas": [
            {
                "name": m.name,
                "host": m.host,
                "role": m.role,
                "ready": m.ready,
                "reason": m.reason,
                "vectors": m.vectors,
                "build_id": m.build_id,
                "position": m.position,
            }
            for m in sorted(members, key=lambda m: m.name)
        ],
        "ready_replicas": sum(1 for m in members if m.ready and m.role == "replica"),
    }
    pointer = current_build(client, shard)
    try:
        artifacts = store.list(shard)
    except ArtifactError as exc:
        row["store_error"] = str(exc)
        artifacts = []
    build_id = generation(pointer, artifacts)
    newest = candidates(artifacts, build_id)
    row["store"] = {
        "build_id": build_id,
        "artifacts": len(artifacts),
        "newest": newest[0].artifact_id if newest else None,
        "newest_position": newest[0].log_position if newest else None,
    }
    row["log"] = {
        "length": log.length(),
        "first": log.first_id(),
        "last": log.last_id(),
        "trimmed_through": log.trimmed_through(),
        "trim_floor": trim_floor(members, artifacts, build_id),
    }
    return row


def overview() -> list[dict[str, Any]]:
    rows = []
    for shard in range(settings.SEARCH_SHARDS):
        try:
            rows.append(shard_overview(shard))
        except redis.RedisError as exc:
            rows.append({"shard": shard, "error": f"Redis unreachable: {exc}"})
    return rows
