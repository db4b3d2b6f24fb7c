"""One Redis connection pool per process for the catalog side (logs, caches)."""

from __future__ import annotations

import functools

import redis
from django.conf import settings

from workers.rpc.redis_url import redis_from_url


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis_from_url(
        url, socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=30
    )


def redis_client() -> redis.Redis:
    """The client for settings.REDIS_URL (looked up per call, so tests can repoint it)."""
    return _client(settings.REDIS_URL)
