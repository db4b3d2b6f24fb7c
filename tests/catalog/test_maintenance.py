"""Recall probe, reconciliation and the Search health page against real workers."""

from __future__ import annotations

import numpy as np
import pytest

from catalog.models import ProductImage, RecallMeasurement
from catalog.redis_clients import redis_client
from catalog.services.recall import run_probe
from catalog.services.reconcile import live_ids, reconcile
from tests.support.indexing import add_product, all_indexed, shards_match_database, wait
from workers.encoding.registry import published_model
from workers.index.log import UpdateLog, shard_for_product
from workers.index.types import VectorAttrs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def indexed_catalog(shard_workers):
    for n in range(10):
        add_product("M", n)
    wait(all_indexed, what="indexing")
    wait(shards_match_database, what="shards to catch up")
    return published_model(redis_client())


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
    wait(lambda: ghost in live_ids(shard).tolist(), what="the sabotage to apply")

    diffs = {d.shard: d for d in reconcile()}
    assert (diffs[shard].missing, diffs[shard].extra) == (1, 1)
    wait(
        lambda: victim.pk in live_ids(shard).tolist() and ghost not in live_ids(shard).tolist(),
        what="the repair",
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
