"""Rebuilding shards while the service runs: replicas swap, and no update is lost."""

from __future__ import annotations

import pytest
from django.conf import settings

from catalog import search
from catalog.models import IndexState, Product
from catalog.services.index_builds import build_shard
from catalog.services.products import product_delete
from tests.support.indexing import add_product, wait
from workers.index.types import SearchFilter
from workers.queues import shard_queue
from workers.tasks.maintenance import rebuild_target
from workers.tasks.shards import shard_stats

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def indexed_ids() -> set[int]:
    """What the shards hold (asked directly, not filtered through the database)."""
    page = search.search_client().search(
        search.product_vector(Product.objects.order_by("-pk").first().pk).reshape(1, -1),
        50,
        SearchFilter(),
    )
    return {int(p) for p in page.result.product_ids[0] if p >= 0}


def test_rebuild_swaps_every_shard_and_keeps_later_updates(shard_workers):
    products = [add_product("RB", n) for n in range(16)]
    wait(
        lambda: set(Product.objects.values_list("index_state", flat=True)) == {IndexState.INDEXED},
        what="indexing",
    )
    wait(lambda: indexed_ids() == {p.pk for p in products}, what="shards to catch up")

    reports = [build_shard(n, spec="IVF2,Flat") for n in range(2)]
    assert all(r["spec"] == "IVF2,Flat" for r in reports)
    assert sum(r["vectors"] for r in reports) == len(products)
    # each tuned for the recall of the answer merged over every shard
    assert [r["tune"]["n_shards"] for r in reports] == [settings.SEARCH_SHARDS] * 2

    # Written after the builds read the table: must survive the swap through the log.
    late = add_product("RB", 99)
    doomed = products[0].pk  # (the instance's pk is None once deleted)
    product_delete(product=products[0])

    def swapped() -> bool:
        specs = [
            shard_stats.apply_async(args=[n], queue=shard_queue(n)).get(timeout=20)["spec"]
            for n in range(2)
        ]
        return specs == ["IVF2,Flat", "IVF2,Flat"]

    wait(swapped, what="replicas to swap to the builds")
    wait(lambda: late.pk in indexed_ids(), what="the late product")
    wait(lambda: doomed not in indexed_ids(), what="the deleted product to leave")
    assert indexed_ids() == {p.pk for p in products[1:]} | {late.pk}


def test_rebuild_target_thresholds(settings):
    settings.INDEX_SPEC = "auto"
    assert rebuild_target("Flat", 1_000, 512) is None
    assert rebuild_target("Flat", 20_000, 512).factory == "HNSW32"
    assert rebuild_target("HNSW32", 40_000, 512) is None
    assert rebuild_target("HNSW32", 60_000, 512).factory.startswith("IVF")
    assert rebuild_target("IVF1024,Flat", 170_000, 512) is None
    assert rebuild_target("IVF64,Flat", 1_000_000, 512) is not None
    assert rebuild_target("IVF4096,Flat", 3_000_000, 512).rerank
    settings.INDEX_SPEC = "HNSW32"
    assert rebuild_target("Flat", 10_000_000, 512) is None
