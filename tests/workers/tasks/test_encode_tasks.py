"""Saving a product makes a real Celery worker encode it and feed its shard's log."""

from __future__ import annotations

import time
from decimal import Decimal

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.models import Embedding, IndexState, Product
from catalog.services.products import product_create
from tests.support.images import image_bytes
from workers.index.log import UpdateLog, shard_for_product

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def wait_for_state(product_id: int, states: set[str], timeout: float = 60.0) -> Product:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        product = Product.objects.get(pk=product_id)
        if product.index_state in states:
            return product
        time.sleep(0.1)
    raise AssertionError(f"product {product_id} stayed {product.index_state}, wanted {states}")


def log_entries(redis_client, shard: int) -> list:
    log = UpdateLog(redis_client, shard, model="", dim=0)
    return log.read("0-0", count=1000, block_ms=None)


def test_saving_a_product_without_image_runs_its_task(encode_worker):
    product = product_create(sku="NOIMG", title="Nothing to see", price=Decimal("1"))
    done = wait_for_state(product.pk, {IndexState.NO_IMAGE, IndexState.FAILED})
    assert done.index_state == IndexState.NO_IMAGE
    assert "no image" in done.index_error


def test_product_with_image_is_encoded_and_logged(encode_worker, staff_client, redis_client):
    created = staff_client.post(
        "/api/products/", {"sku": "IMG-9", "title": "Red ball", "price": "9.50"}, format="json"
    ).json()
    upload = SimpleUploadedFile("ball.png", image_bytes("PNG"), content_type="image/png")
    image = staff_client.post(
        f"/api/products/{created['id']}/images/", {"image": upload}, format="multipart"
    ).json()
    product = wait_for_state(created["id"], {IndexState.INDEXED, IndexState.FAILED})
    assert product.index_state == IndexState.INDEXED, product.index_error

    embedding = Embedding.objects.get(image_id=image["id"])
    vector = np.frombuffer(bytes(embedding.vector), dtype="<f4")
    assert vector.shape == (embedding.dim,)
    np.testing.assert_allclose(np.linalg.norm(vector), 1.0, rtol=1e-5)
    assert embedding.source_sha256 == image["sha256"]

    shard = shard_for_product(product.pk, 2)
    upserts = [e for e in log_entries(redis_client, shard) if e.op == "upsert"]
    assert any(image["id"] in e.ids.tolist() for e in upserts)
    other = [e for e in log_entries(redis_client, 1 - shard) if image["id"] in e.ids.tolist()]
    assert other == []

    # Saving again with nothing changed publishes again but does not re-encode.
    first_update = embedding.updated_at
    staff_client.patch(f"/api/products/{product.pk}/", {"title": "Red ball"}, format="json")
    wait_for_state(product.pk, {IndexState.INDEXED})
    time.sleep(0.5)
    assert Embedding.objects.get(image_id=image["id"]).updated_at == first_update

    # Deleting the product appends a delete of its image.
    staff_client.delete(f"/api/products/{product.pk}/")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        deletes = [e for e in log_entries(redis_client, shard) if e.op == "delete"]
        if any(image["id"] in e.ids.tolist() for e in deletes):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("no delete entry for the deleted product's image")
