"""A corrupt newest snapshot in the store: the replica refuses it by checksum, starts from
the previous one and replays the log."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from catalog.models import Product, ProductImage
from catalog.services.products import product_delete
from tests.support.indexing import (
    add_until_on_shard,
    all_indexed,
    expected_ids,
    live_ids,
    on_shard,
    shards_match_database,
    wait,
)
from workers.queues import shard_queue
from workers.tasks.shards import shard_snapshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def snapshot_shard0() -> Path:
    """Publish shard 0's state; the folder of the artifact in the (file://) store."""
    uri = shard_snapshot.apply_async(args=[0], queue=shard_queue(0)).get(timeout=30)
    assert uri.startswith("file://"), uri
    return Path(urlparse(uri).path)


def test_corrupt_snapshot_falls_back_to_the_previous_one(shard_workers):
    first = add_until_on_shard(0, "CS", 0, count=2)
    wait(all_indexed, what="the first products to be indexed")
    wait(shards_match_database, what="the shards to hold the first products")
    older = snapshot_shard0()

    second = add_until_on_shard(0, "CS", 100, count=2)
    product_delete(product=Product.objects.get(pk=on_shard(0, first)[0]))
    wait(all_indexed, what="the second products to be indexed")
    wait(shards_match_database, what="the shards to hold the second products")
    newest = snapshot_shard0()
    assert newest.parent == older.parent
    assert newest != older

    third = add_until_on_shard(0, "CS", 200, count=2)  # only in the log
    wait(all_indexed, what="the third products to be indexed")
    wait(shards_match_database, what="the shards to hold the third products")

    shard_workers[0].kill()  # no snapshot on the way down
    index_file = newest / "bulk.faiss"
    data = bytearray(index_file.read_bytes())
    data[len(data) // 2 :] = b"\x00" * (len(data) - len(data) // 2)
    index_file.write_bytes(bytes(data))

    shard_workers[0].start()
    wait(shards_match_database, what="the restarted shard to catch up from the older snapshot")
    assert live_ids(0) == expected_ids(0)
    survivors = on_shard(0, second + third)
    survivor_images = set(
        ProductImage.objects.filter(product_id__in=survivors).values_list("pk", flat=True)
    )
    assert len(survivor_images) == len(survivors)
    assert survivor_images <= live_ids(0)
    assert "refusing artifact" in shard_workers[0].log()
    assert older.is_dir(), "the fallback snapshot is still there"
