"""Which CLIP model the encode workers run, published in Redis for the web processes.

The web never loads the model, yet it needs the model's name to key the query
embedding cache; the name may differ from CLIP_MODEL when a worker fell back to
the offline tiny model.
"""

from __future__ import annotations

import redis

MODEL_KEY = "search:encoder:model"


def publish_model(client: redis.Redis, name: str, dim: int) -> None:
    client.hset(MODEL_KEY, mapping={"name": name, "dim": int(dim)})


def published_model(client: redis.Redis) -> tuple[str, int] | None:
    """(name, dim) of the running encoder, or None when no encode worker has said."""
    fields = client.hgetall(MODEL_KEY)
    try:
        return fields[b"name"].decode(), int(fields[b"dim"])
    except (KeyError, ValueError, UnicodeDecodeError):
        return None
