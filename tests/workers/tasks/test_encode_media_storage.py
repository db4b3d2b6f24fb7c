"""Images on S3: an outage of the bucket is retried by the real encode worker, never
marked `missing_file`, and the image is encoded once the storage is back."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from catalog.models import Embedding, IndexState, Product, ProductImage
from catalog.services.encode_leases import lease_key
from searchsite.media_storage import media_storage
from tests.support.images import image_bytes
from tests.support.indexing import wait
from tests.support.processes import CeleryWorker
from tests.support.s3 import s3_server
from workers.queues import Queue

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RETRY = re.compile(r"encode_products\[([0-9a-f-]+)\] retry: Retry in")


def most_retries_of_one_task(worker: CeleryWorker) -> int:
    """From the worker's log (Celery logs each retry at INFO)."""
    return max(Counter(RETRY.findall(worker.log())).values(), default=0)


def test_s3_outage_is_retried_then_encoded_when_the_bucket_is_back(
    redis_url, redis_client, tiny_clip_model, worker_logs, staff_client, settings, monkeypatch
):
    with s3_server(worker_logs) as s3:
        storage_env = {
            **s3.env(),
            "MEDIA_STORAGE_URL": f"s3://{s3.bucket}/media",
            "MEDIA_S3_ENDPOINT_URL": s3.endpoint_url,
            "AWS_MAX_ATTEMPTS": "1",  # one try per read: the task does the retrying
        }
        for name, value in storage_env.items():
            monkeypatch.setenv(name, value)
        settings.STORAGES = {**settings.STORAGES, "default": media_storage(storage_env)}

        # The web stores the upload in the bucket; no encode worker runs yet.
        product = staff_client.post(
            "/api/products/", {"sku": "S3-1", "title": "Blue mug", "price": "4.00"}, format="json"
        ).json()
        upload = SimpleUploadedFile("mug.png", image_bytes("PNG"), content_type="image/png")
        answer = staff_client.post(
            f"/api/products/{product['id']}/images/", {"image": upload}, format="multipart"
        )
        assert answer.status_code == 201, answer.content
        image = ProductImage.objects.get(pk=answer.json()["id"])
        key = f"media/{image.image.name}"
        stored = s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read()
    # The S3 server is stopped. The image row is made old: were the outage taken for a
    # missing file, the image would be `missing_file` at once.
    ProductImage.objects.filter(pk=image.pk).update(updated_at=timezone.now() - timedelta(hours=2))

    worker = CeleryWorker(
        [Queue.ENCODE.value, Queue.DEFAULT.value],
        redis_url,
        worker_logs,
        **storage_env,
        ENCODE_RETRY_BACKOFF_S="0.3",
        ENCODE_RETRY_BACKOFF_MAX_S="1",
    ).start()
    try:
        wait(
            lambda: (
                most_retries_of_one_task(worker) >= 3 or ProductImage.objects.get(pk=image.pk).error
            ),
            timeout=30,
            what="three retries",
        )
        image.refresh_from_db()
        assert image.error == ""  # not missing_file
        assert not Embedding.objects.filter(image=image).exists()
        # Between two tries the product is pending again (a try in flight shows encoding).
        seen: list[Product] = []

        def pending_between_tries() -> bool:
            seen.append(Product.objects.get(pk=product["id"]))
            return seen[-1].index_state == IndexState.PENDING

        wait(pending_between_tries, timeout=10, what="the product pending between two tries")
        waiting = seen[-1]
        assert "media storage could not read" in waiting.index_error
        assert "missing" not in waiting.index_error
        # Its retry holds the product's lease, so the stale sweep leaves it to that retry.
        wait(lambda: redis_client.exists(lease_key(waiting.pk)), timeout=5, what="its lease")

        # A restarted moto server comes back with an empty bucket: the file is put back
        # right away, and the row is young again so a read in between is "not stored yet".
        ProductImage.objects.filter(pk=image.pk).update(updated_at=timezone.now())
        with s3_server(worker_logs, port=s3.port) as again:
            again.client().put_object(Bucket=again.bucket, Key=key, Body=stored)
            started = time.monotonic()
            wait(
                lambda: (
                    Product.objects.get(pk=product["id"]).index_state
                    in {IndexState.INDEXED, IndexState.FAILED}
                ),
                timeout=30,
                what="the image encoded after the outage",
            )
            took = time.monotonic() - started
    finally:
        worker.stop()

    done = Product.objects.get(pk=product["id"])
    assert done.index_state == IndexState.INDEXED, done.index_error
    assert done.index_error == ""
    image.refresh_from_db()
    assert image.error == ""
    assert Embedding.objects.get(image=image).source_sha256 == image.sha256
    assert took < 10  # the next retry, not a sweep minutes later
