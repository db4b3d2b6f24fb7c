"""Which CLIP model the encode workers run, published in Redis for the web processes.

The web never loads the model, yet it needs the model's name to key the query
embedding cache and to tell people which model answers them; the name may differ
from CLIP_MODEL when a worker fell back to the offline tiny model, whose random
weights make every result meaningless (the record says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

MODEL_KEY = "search:encoder:model"
_FLAGS = {"1": True, "0": False}


@dataclass(frozen=True)
class PublishedModel:
    name: str
    dim: int
    # True: a randomly initialised checkpoint (the offline tiny CLIP); None: an encoder
    # from before the flag was published, so nobody has said.
    random_weights: bool | None


def publish_model(client: redis.Redis, name: str, dim: int, *, random_weights: bool) -> None:
    client.hset(
        MODEL_KEY, mapping={"name": name, "dim": int(dim), "random_weights": int(random_weights)}
    )


def published_encoder(client: redis.Redis) -> PublishedModel | None:
    """What the running encoder published, or None when no encode worker has said or the
    record is malformed (a name that is not UTF-8 or empty, a dim that is not a positive
    integer, a flag other than 0 or 1)."""
    fields = client.hgetall(MODEL_KEY)
    try:
        name = _text(fields[b"name"])
        dim = int(fields[b"dim"])
        flag = fields.get(b"random_weights")
        random_weights = None if flag is None else _FLAGS[_text(flag)]
    except (KeyError, ValueError, UnicodeDecodeError):
        return None
    if not name or dim <= 0:
        return None
    return PublishedModel(name, dim, random_weights)


def published_model(client: redis.Redis) -> tuple[str, int] | None:
    """(name, dim) of the running encoder, or None when no encode worker has said."""
    found = published_encoder(client)
    return None if found is None else (found.name, found.dim)


def _text(value: bytes | str) -> str:
    """A field of a client without decode_responses is bytes; decoding may raise."""
    return value.decode() if isinstance(value, bytes) else value
