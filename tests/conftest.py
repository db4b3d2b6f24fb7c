"""Session-wide fixtures: a private Redis server and clean state between tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from workers.redis_process import RedisProcess

# Processes the tests start (workers, manage.py) must never join a stack that a developer's
# `make run` announces in data/stack.env (settings.py skips it in the test process itself).
os.environ["STACK_ENV"] = ""


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A redis-server private to this test session (never the machine's shared one).

    It has a password, like every RedisProcess: every test connects through its
    URL, so every Redis user in the code is exercised with authentication."""
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> Iterator[str]:
    """The private server's URL, emptied before each test."""
    if redis_server.proc is None:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# --- Django: only when pytest-django is active (tests/workers/* also run without it) ---


def pytest_configure(config: pytest.Config) -> None:
    """Per-session scratch state: a file SQLite database that worker processes can share,
    and a private Prometheus multiprocess directory (never the data/ one `make run` uses)."""
    if not config.pluginmanager.hasplugin("django"):
        return
    import tempfile

    from django.conf import settings

    metrics_dir = Path(tempfile.mkdtemp(prefix="vps-test-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)  # before prometheus_client loads
    settings.PROMETHEUS_MULTIPROC_DIR = metrics_dir

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        db["TEST"]["NAME"] = str(Path(tempfile.mkdtemp(prefix="vps-test-")) / "test.sqlite3")


@pytest.fixture(scope="session", autouse=True)
def _django_on_private_redis(request: pytest.FixtureRequest) -> Iterator[None]:
    """Point the Django cache, Celery and every Redis user at the session's private server."""
    if not request.config.pluginmanager.hasplugin("django"):
        yield
        return
    from django.conf import settings

    from searchsite.celery import app

    server: RedisProcess = request.getfixturevalue("redis_server")
    scratch = request.getfixturevalue("tmp_path_factory").mktemp("site")
    settings.MEDIA_ROOT = scratch / "media"
    settings.INDEX_DIR = scratch / "index"
    settings.INDEX_STORE_URL = (scratch / "index-store").as_uri()
    settings.REDIS_URL = server.url
    settings.CACHES["default"]["LOCATION"] = server.url
    settings.CELERY_BROKER_URL = settings.CELERY_RESULT_BACKEND = server.url
    app.conf.broker_url = app.conf.result_backend = server.url
    settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"].update(
        anon="100000/minute", user="100000/minute", search="100000/minute"
    )
    yield


@pytest.fixture(autouse=True)
def _no_stale_product_cache(request: pytest.FixtureRequest) -> None:
    """Rows vanish between tests without signals (rollback, flush) and ids are reused:
    drop the cached product cards and vectors (catalog.product_cache) with them, and the
    web's view of which shards are served (each test starts its own replicas)."""
    if not request.config.pluginmanager.hasplugin("django"):
        return
    from catalog.search import _search_client

    _search_client.cache_clear()
    server: RedisProcess = request.getfixturevalue("redis_server")
    if server.proc is None:
        return
    client = redis.Redis.from_url(server.url)
    try:
        keys = list(client.scan_iter(match="catalog:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def staff_client(db, api_client):
    """An API client authenticated by token as a staff user."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user("staff", password="pw-staff-123", is_staff=True)
    token = Token.objects.create(user=user)
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return api_client


@pytest.fixture
def worker_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker-logs")


@pytest.fixture(scope="session")
def tiny_clip_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP saved locally; Django settings (and workers started later) use it."""
    from django.conf import settings

    from workers.encoding.tiny_clip import build_tiny_clip

    path = build_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "model", seed=0)
    settings.CLIP_MODEL = str(path)
    return path


@pytest.fixture
def launched_encode_worker(redis_url, tiny_clip_model, worker_logs, transactional_db):
    """The encode worker's process, not yet waited for: `shard_workers` starts the shard
    workers while it loads its model."""
    from tests.support.processes import CeleryWorker
    from workers.queues import Queue

    worker = CeleryWorker([Queue.ENCODE.value, Queue.DEFAULT.value], redis_url, worker_logs)
    yield worker.launch()
    worker.stop()


@pytest.fixture
def encode_worker(launched_encode_worker):
    """A real Celery worker on the encode queue (its own process, the tiny model)."""
    return launched_encode_worker.ready()


@pytest.fixture
def shard_workers(launched_encode_worker, redis_url, worker_logs, settings, tmp_path):
    """One real search worker per shard (two shards), beside the encode worker.

    Each test gets its own index directory and store: artifacts must not leak between tests.
    """
    from tests.support.processes import CeleryWorker, stop_together
    from workers.queues import shard_queue

    settings.INDEX_DIR = tmp_path / "index"
    settings.INDEX_STORE_URL = (tmp_path / "index-store").as_uri()
    workers = [CeleryWorker([shard_queue(n)], redis_url, worker_logs).launch() for n in range(2)]
    try:
        for worker in (launched_encode_worker, *workers):
            worker.ready()
        yield workers
    finally:
        stop_together(workers)
