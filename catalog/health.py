"""What the service depends on, and whether each part answers right now."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import redis
from django.conf import settings
from django.db import connection

from catalog.model_in_use import configured_model, model_in_use_or_configured
from workers.rpc.redis_url import redis_from_url


def _check_database() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "down"; report it, don't raise
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 2)}


def _check_redis() -> dict[str, Any]:
    started = time.perf_counter()
    client = redis_from_url(settings.REDIS_URL, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        client.ping()
    except redis.RedisError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        client.close()
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 2)}


WORKERS_CACHE_KEY = "health:celery-workers"


def workers_by_queue(timeout: float) -> dict[str, Any]:
    """Which queues the Celery workers consume; cached 15 s, since asking takes `timeout`."""
    from django.core.cache import cache

    try:
        cached = cache.get(WORKERS_CACHE_KEY)
    except Exception:  # the cache is Redis: when it is down, ask directly and say so below
        cached = None
    if cached is not None:
        return cached
    seen = _ask_workers(timeout)
    if seen["ok"]:
        with contextlib.suppress(Exception):  # not caching is fine
            cache.set(WORKERS_CACHE_KEY, seen, 15)
    return seen


def _ask_workers(timeout: float) -> dict[str, Any]:
    """Broadcast an inspect to the Celery workers, collecting replies for `timeout` seconds."""
    from searchsite.celery import app

    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception as exc:  # kombu raises several transport errors; all mean "cannot tell"
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "queues": {}}
    queues: dict[str, list[str]] = {}
    for worker, consumed in replies.items():
        for queue in consumed:
            queues.setdefault(queue["name"], []).append(worker)
    return {"ok": True, "workers": sorted(replies), "queues": queues}


def _model(redis_ok: bool) -> dict[str, Any]:
    """The CLIP model searches run on (see catalog/model_in_use.py)."""
    return (model_in_use_or_configured() if redis_ok else configured_model()).as_dict()


def health_report(*, worker_timeout: float = 1.0) -> tuple[bool, dict[str, Any]]:
    """(can the web serve?, details).

    Serving needs the database and Redis; the Celery workers seen are reported, not required,
    and so is the CLIP model (the one the encode workers published, else the configured one).
    """
    database = _check_database()
    redis_state = _check_redis()
    workers = (
        workers_by_queue(worker_timeout)
        if redis_state["ok"]
        else {"ok": False, "error": "redis is down", "queues": {}}
    )
    reasons = [
        f"{name}: {state['error']}"
        for name, state in (("database", database), ("redis", redis_state))
        if not state["ok"]
    ]
    healthy = not reasons
    return healthy, {
        "status": "ok" if healthy else "unavailable",
        "reasons": reasons,
        "database": database,
        "redis": redis_state,
        "celery": workers,
        "model": _model(redis_state["ok"]),
    }
