"""Recall probe, reconciliation and the Search health page against real workers."""

from __future__ import annotations

import time
from decimal import Decimal

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.models import IndexState, Product, ProductImage, RecallMeasurement
from catalog.redis_clients import redis_client
from catalog.services.images import image_add_upload
from catalog.services.products import product_create
from catalog.services.recall import run_probe
from catalog.services.reconcile import expected_ids, live_ids, reconcile
from tests.support.images import image_bytes
from workers.encoding.registry import published_model
from workers.index.log import UpdateLog, shard_for_product
from workers.index.types import VectorAttrs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def wait(predicate, timeout: float = 60.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {message}"
        time.sleep(0.2)


@pytest.fixture
def indexed_catalog(shard_workers):
    for n in range(10):
        product = product_create(sku=f"M-{n}", title=f"Thing {n}", price=Decimal(3 + n))
        colour = ((n * 70) % 256, (n * 30) % 256, (n * 110) % 256)
        image_add_upload(
            product=product,
            upload=SimpleUploadedFile(f"{n}.png", image_bytes("PNG", colour=colour), "image/png"),
        )
    wait(
        lambda: set(Product.objects.values_list("index_state", flat=True)) == {IndexState.INDEXED},
        message="indexing",
    )
    model, dim = published_model(redis_client())
    expected = expected_ids(model, dim)
    wait(
        lambda: all(set(live_ids(n).tolist()) == set(expected[n]) for n in range(2)),
        message="shards to catch up",
    )
    return model, dim


def test_recall_probe_on_exact_shards_is_perfect(indexed_catalog):
    result = run_probe(n_queries=8, seed=1)
    assert result is not None
    assert result.recall == pytest.approx(1.0)
    assert set(result.per_shard) <= {0, 1}
    assert result.partial == 0
    stored = RecallMeasurement.objects.filter(shard__isnull=True).get()
    assert stored.queries == 8
    assert stored.latency_p50_ms > 0


def test_reconcile_repairs_missing_and_extra_ids(indexed_catalog):
    model, dim = indexed_catalog
    client = redis_client()
    victim = ProductImage.objects.order_by("pk").first()
    shard = shard_for_product(victim.product_id, 2)
    log = UpdateLog(client, shard, model, dim)
    log.append_deletes(np.asarray([victim.pk], dtype=np.int64))  # the shard loses a real id
    ghost = 10_000_000
    log.append_upserts(  # and gains one that no database row backs
        np.asarray([ghost], dtype=np.int64),
        np.full((1, dim), 1 / np.sqrt(dim), dtype=np.float32),
        VectorAttrs.build([ghost], [-1], [1.0], [True]),
    )
    wait(lambda: ghost in live_ids(shard).tolist(), message="the sabotage to apply")

    diffs = {d.shard: d for d in reconcile()}
    assert (diffs[shard].missing, diffs[shard].extra) == (1, 1)
    wait(
        lambda: victim.pk in live_ids(shard).tolist() and ghost not in live_ids(shard).tolist(),
        message="the repair",
    )
    again = {d.shard: d for d in reconcile(repair=False)}
    assert all((d.missing, d.extra) == (0, 0) for d in again.values())


def test_search_health_page(indexed_catalog, client, django_user_model):
    run_probe(n_queries=4, seed=2)
    admin = django_user_model.objects.create_superuser("root", password="pw-root-123")
    assert client.get("/admin/search-health/").status_code == 302  # staff only
    client.force_login(admin)
    page = client.get("/admin/search-health/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("<tr>") >= 3  # header + one row per shard
    assert "data:image/png;base64," in html
    assert "Flat" in html
    assert "/admin/search-health/" in client.get("/admin/").content.decode()
