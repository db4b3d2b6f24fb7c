"""Real Celery worker processes for integration tests, on the session's Redis and test DB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """A DATABASE_URL for the database the tests run against (the test database)."""
    params = connection.settings_dict
    if params["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{params['NAME']}"
    user = params.get("USER") or ""
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = params.get("HOST") or "127.0.0.1"
    port = f":{params['PORT']}" if params.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{params['NAME']}"


def worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    from django.conf import settings

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="searchsite.settings",
        DATABASE_URL=database_url(),
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        CELERY_RESULT_BACKEND=redis_url,
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        INDEX_DIR=str(settings.INDEX_DIR),
        INDEX_STORE_URL=str(settings.INDEX_STORE_URL),
        CLIP_MODEL=str(settings.CLIP_MODEL),
        SEARCH_SHARDS=str(settings.SEARCH_SHARDS),
        IMAGE_URL_ALLOW_PRIVATE="true" if settings.IMAGE_URL_ALLOW_PRIVATE else "false",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class CeleryWorker:
    """`celery worker` in a subprocess; start() waits until it answers a ping."""

    def __init__(self, queues: Sequence[str], redis_url: str, log_dir: Path, **env: str) -> None:
        self.name = f"test-{'-'.join(queues)}-{uuid.uuid4().hex[:6]}@localhost"
        self.queues = list(queues)
        self.env = worker_env(redis_url, **env)
        self.log_path = log_dir / f"{self.name.split('@')[0]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> CeleryWorker:
        return self.launch().ready(timeout)

    def launch(self) -> CeleryWorker:
        """Start the process without waiting for it: several workers load side by side
        (an encode worker loads its model before it answers)."""
        from searchsite.celery import worker_argv

        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            worker_argv(sys.executable, self.queues, self.name),
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def ready(self, timeout: float = 60.0) -> CeleryWorker:
        """Wait until the launched worker answers a ping."""
        from searchsite.celery import app

        try:
            self._wait_ready(app, timeout)
        except BaseException:
            self.stop()  # never leave a half-started worker behind to serve later tests
            raise
        return self

    def _wait_ready(self, app, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early; log:\n{self.log()[-3000:]}")
            # A fresh connection each time: a pooled one may be broken by an earlier Redis restart.
            with app.connection_for_write() as connection:
                if app.control.ping(destination=[self.name], timeout=0.5, connection=connection):
                    return
        raise RuntimeError(f"worker did not answer in {timeout}s; log:\n{self.log()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.signal(sig)
        self.join()

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def join(self) -> None:
        """Wait for the process to exit (killing it after 30 s)."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def stop_together(workers: Iterable[CeleryWorker]) -> None:
    """Warm shutdowns side by side: each worker finishes its own (a shard's final work)
    while the others do."""
    workers = list(workers)
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        worker.join()
