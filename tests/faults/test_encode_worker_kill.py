"""kill -9 an encode worker mid-batch: its products are sent again, and end indexed.

With the real settings the broker hands a dead worker's unacknowledged task back only after
its visibility timeout (30 min); the encode lease lapses within seconds instead, and the
beat sweep re-sends the batch. A batch that is slow but alive keeps its lease.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings as django_settings

from catalog.models import IndexState, Product, ProductImage
from catalog.redis_clients import redis_client as catalog_redis
from catalog.services.enqueue import batched_encoding
from catalog.services.images import image_add_url
from catalog.services.products import product_create
from tests.support.images import image_bytes
from tests.support.indexing import wait
from tests.support.processes import ROOT, CeleryWorker, worker_env
from tests.support.servers import serving
from workers.index.log import UpdateLog
from workers.queues import Queue
from workers.tasks.encoding import encode_stale

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

VISIBILITY_TIMEOUT_S = 2  # a dead worker's unacknowledged task comes back after this


class SlowImages(BaseHTTPRequestHandler):
    """Serves a real PNG per path, slowly: a batch of these takes seconds to fetch."""

    delay_s = 1.0
    requests: list[str] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        time.sleep(self.delay_s)
        n = int(self.path.rsplit("/", 1)[-1].split(".")[0])
        body = image_bytes("PNG", colour=((n * 67) % 256, (n * 29) % 256, 90))
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A killed worker drops its fetches midway: a broken pipe here is expected."""


@pytest.fixture
def slow_server() -> Iterator[str]:
    SlowImages.requests = []
    SlowImages.delay_s = 1.0
    with serving(QuietServer(("127.0.0.1", 0), SlowImages)) as port:
        yield f"http://127.0.0.1:{port}"


def test_killed_encode_worker_task_is_redelivered(
    redis_url, tiny_clip_model, worker_logs, settings, slow_server
):
    settings.IMAGE_URL_ALLOW_PRIVATE = True  # the image server is on loopback
    env = {"CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT_S), "ENCODE_BATCH_PRODUCTS": "64"}
    worker = CeleryWorker([Queue.ENCODE.value], redis_url, worker_logs, **env).start()
    try:
        ids = []
        with batched_encoding():  # one task for the whole batch: only its redelivery can finish it
            for n in range(4):
                product = product_create(sku=f"EK-{n}", title=f"Remote {n}", price=Decimal(3 + n))
                image_add_url(product=product, source_url=f"{slow_server}/img/{n}.png")
                ids.append(product.pk)

        wait(lambda: SlowImages.requests, timeout=30, what="the worker to start fetching")
        worker.kill()  # mid-batch: images are being fetched, nothing is published yet
        killed_at = time.monotonic()
        states = set(Product.objects.filter(pk__in=ids).values_list("index_state", flat=True))
        assert states == {IndexState.ENCODING}
        fetched_before = len(SlowImages.requests)

        time.sleep(max(0.0, VISIBILITY_TIMEOUT_S + 0.5 - (time.monotonic() - killed_at)))
        worker.start()  # a fresh worker (same queue) takes the handed-back task
        wait(
            lambda: (
                set(Product.objects.filter(pk__in=ids).values_list("index_state", flat=True))
                == {IndexState.INDEXED}
            ),
            timeout=90,
            what="the redelivered batch to index every product",
        )
    finally:
        worker.stop()
    assert len(SlowImages.requests) > fetched_before, "the images were fetched again"
    assert "workers.tasks.encoding.encode_products" in worker.log()


class Beat:
    """`celery beat` in a subprocess, with the real schedule (settings.CELERY_BEAT_SCHEDULE)."""

    def __init__(self, redis_url: str, log_dir, schedule_dir) -> None:
        self.env = worker_env(redis_url)
        self.log_path = log_dir / "beat.log"
        self.schedule = schedule_dir / "celerybeat-schedule"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Beat:
        argv = [sys.executable, "-m", "celery", "-A", "searchsite", "beat"]
        argv += ["--schedule", str(self.schedule), "--loglevel", "INFO"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def logged_image_ids() -> set[int]:
    """Image ids the shard update logs hold an upsert for (what the search workers replay)."""
    found: set[int] = set()
    for shard in range(django_settings.SEARCH_SHARDS):
        log = UpdateLog(catalog_redis(), shard, model=django_settings.CLIP_MODEL, dim=0)
        for entry in log.read(count=100_000):
            if entry.op == "upsert":
                found.update(int(i) for i in entry.ids)
            else:
                found.difference_update(int(i) for i in entry.ids)
    return found


def states(ids: list[int]) -> set[str]:
    return set(Product.objects.filter(pk__in=ids).values_list("index_state", flat=True))


def add_remote_products(server: str, tag: str, n: int) -> list[int]:
    """n products with one slow remote image each, queued as one encode task."""
    ids = []
    with batched_encoding():
        for k in range(n):
            product = product_create(sku=f"{tag}-{k}", title=f"{tag} {k}", price=Decimal(3 + k))
            image_add_url(product=product, source_url=f"{server}/img/{k}.png")
            ids.append(product.pk)
    return ids


RECOVERY_DEADLINE_S = 90  # liveness, not performance: the broker alone would take 1800 s


def test_killed_encode_worker_batch_recovers_within_a_minute(
    redis_url, tiny_clip_model, worker_logs, settings, slow_server, tmp_path
):
    """Real settings (a visibility timeout of 1800 s) and a real beat: the sweep recovers it."""
    settings.IMAGE_URL_ALLOW_PRIVATE = True  # the image server is on loopback
    SlowImages.delay_s = 0.5
    worker = CeleryWorker([Queue.ENCODE.value, Queue.DEFAULT.value], redis_url, worker_logs)
    beat = Beat(redis_url, worker_logs, tmp_path)
    worker.start()
    beat.start()
    try:
        ids = add_remote_products(slow_server, "KL", 30)
        wait(lambda: len(SlowImages.requests) >= 4, timeout=30, what="the batch to start")
        worker.kill()  # mid-batch: nothing is published yet, the task stays unacknowledged
        killed_at = time.monotonic()
        assert states(ids) == {IndexState.ENCODING}
        fetched_before = len(SlowImages.requests)

        worker.start()  # a fresh worker; the broker keeps the dead one's task for 30 min
        images = set(ProductImage.objects.filter(product__in=ids).values_list("pk", flat=True))
        wait(
            lambda: states(ids) == {IndexState.INDEXED} and images <= logged_image_ids(),
            timeout=RECOVERY_DEADLINE_S,
            what=f"every product indexed and in the shard logs {RECOVERY_DEADLINE_S}s after a kill",
        )
        recovered_s = time.monotonic() - killed_at
    finally:
        beat.stop()
        worker.stop()
    print(f"\nrecovered {len(ids)} products {recovered_s:.1f}s after the kill")
    assert len(SlowImages.requests) > fetched_before, "the images were fetched again"
    assert "workers.tasks.encoding.encode_stale" in beat.log()


def test_slow_but_alive_batch_is_not_sent_again(
    redis_url, tiny_clip_model, worker_logs, settings, slow_server
):
    """A batch that outlives its lease TTL several times over renews it: sweeps leave it be."""
    settings.IMAGE_URL_ALLOW_PRIVATE = True
    lease_ttl_s = 2.0
    worker = CeleryWorker(
        [Queue.ENCODE.value], redis_url, worker_logs, ENCODE_LEASE_TTL_S=str(lease_ttl_s)
    ).start()
    try:
        ids = add_remote_products(slow_server, "SL", 12)  # 12 s of fetching on 2 threads: ~6 s
        wait(lambda: SlowImages.requests, timeout=30, what="the batch to start")
        sweeps = []
        started = time.monotonic()
        while states(ids) == {IndexState.ENCODING}:
            sweeps.append(encode_stale.apply(kwargs={"older_than_s": 0}).get())
            assert catalog_redis().llen(Queue.ENCODE.value) == 0, "a sweep re-sent the live batch"
            time.sleep(0.25)
        swept_for_s = time.monotonic() - started
        wait(lambda: states(ids) == {IndexState.INDEXED}, timeout=60, what="the batch to finish")
    finally:
        worker.stop()
    assert swept_for_s > 2 * lease_ttl_s, f"the batch took only {swept_for_s:.1f}s"
    assert sweeps
    assert set(sweeps) == {0}, sweeps
    assert sorted(SlowImages.requests) == sorted(set(SlowImages.requests)), "fetched twice"
    assert len(SlowImages.requests) == len(ids)
