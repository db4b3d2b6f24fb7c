"""Which CLIP model answers searches, as the site tells shoppers, staff and the health check.

The encode workers publish the model they loaded (workers/encoding/registry.py); until
one has, only the configured CLIP_MODEL is known. A randomly initialised model (the
offline tiny CLIP `make run` falls back to) gets a warning wherever the model is named.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import redis
from django.conf import settings

from catalog.redis_clients import redis_client
from workers.encoding.registry import published_encoder

RANDOM_WEIGHTS_WARNING = "offline demo model with random weights: results are not meaningful"


@dataclass(frozen=True)
class ModelInUse:
    name: str
    dim: int | None
    random_weights: bool | None  # None: not known (no encode worker has said)
    source: str  # "encoder": published by a running encode worker; "configured": CLIP_MODEL

    @property
    def warning(self) -> str | None:
        return RANDOM_WEIGHTS_WARNING if self.random_weights else None

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "warning": self.warning}


def configured_model() -> ModelInUse:
    return ModelInUse(settings.CLIP_MODEL, None, None, "configured")


def model_in_use(client: redis.Redis | None = None) -> ModelInUse:
    """The published model, else the configured one; raises redis.RedisError when Redis
    does not answer (callers choose between a 503 and saying "not known")."""
    found = published_encoder(client or redis_client())
    if found is None:
        return configured_model()
    return ModelInUse(found.name, found.dim, found.random_weights, "encoder")


def model_in_use_or_configured() -> ModelInUse:
    """For pages and the health check: never fails, Redis away means "configured"."""
    try:
        return model_in_use()
    except redis.RedisError:
        return configured_model()
