"""kill -9 an encode worker mid-batch: its task comes back, and the products end indexed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from catalog.models import IndexState, Product
from catalog.services.enqueue import batched_encoding
from catalog.services.images import image_add_url
from catalog.services.products import product_create
from tests.support.images import image_bytes
from tests.support.indexing import wait
from tests.support.processes import CeleryWorker
from workers.queues import Queue

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


@pytest.fixture
def slow_server() -> Iterator[str]:
    SlowImages.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowImages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


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
