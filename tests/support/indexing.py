"""Helpers of the integration tests: products through the services, and what each shard holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.models import Embedding, IndexState, Product
from catalog.services.images import image_add_upload
from catalog.services.products import product_create
from tests.support.images import image_bytes
from workers.index.log import shard_for_product


def add_product(tag: str, n: int) -> Product:
    """A product with one small real image, saved through the services (so it gets indexed)."""
    product = product_create(sku=f"{tag}-{n}", title=f"{tag} item {n}", price=Decimal(5 + n % 50))
    colour = ((n * 37) % 256, (n * 91) % 256, (n * 53) % 256)
    upload = SimpleUploadedFile(f"{n}.png", image_bytes("PNG", colour=colour), "image/png")
    image_add_upload(product=product, upload=upload)
    return product


def wait(predicate: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def all_indexed() -> bool:
    states = set(Product.objects.filter(is_active=True).values_list("index_state", flat=True))
    return states <= {IndexState.INDEXED}


def encoders_idle() -> bool:
    """No encode task queued or running: nothing will publish an update unasked (a busy
    machine leaves a catalog's duplicate tasks running after every product is indexed)."""
    from catalog.redis_clients import redis_client
    from searchsite.celery import app
    from workers.queues import Queue

    if redis_client().llen(Queue.ENCODE.value):
        return False
    # a fresh connection: a pooled one may be broken by an earlier test's Redis restart
    with app.connection_for_write() as connection:
        active = app.control.inspect(timeout=1.0, connection=connection).active() or {}
    return not any(
        task["name"].startswith("workers.tasks.encoding")
        for tasks in active.values()
        for task in tasks
    )


def expected_ids(shard: int) -> set[int]:
    """Image ids of the active products' stored embeddings that belong to `shard`."""
    rows = Embedding.objects.filter(image__product__is_active=True).values_list(
        "image_id", "image__product_id"
    )
    return {
        int(image_id)
        for image_id, product_id in rows
        if shard_for_product(product_id, settings.SEARCH_SHARDS) == shard
    }


def live_ids(shard: int, timeout: float = 30.0) -> set[int]:
    """The live image ids of the shard's running replica (asked with the shard_ids task)."""
    from catalog.services.reconcile import live_ids as ask_shard

    return set(ask_shard(shard, timeout).tolist())


def shards_match_database() -> bool:
    """Each shard holds exactly the database's active embeddings and says it is ready, so
    the web sends it searches (False while one is silent)."""
    from catalog.redis_clients import redis_client
    from catalog.services.reconcile import ShardDidNotAnswer
    from workers.index.membership import ready_shards

    n_shards = settings.SEARCH_SHARDS
    if ready_shards(redis_client(), n_shards) != set(range(n_shards)):
        return False
    try:
        return all(live_ids(n) == expected_ids(n) for n in range(n_shards))
    except ShardDidNotAnswer:
        return False


def on_shard(shard: int, product_ids: list[int]) -> list[int]:
    return [i for i in product_ids if shard_for_product(i, settings.SEARCH_SHARDS) == shard]


def add_until_on_shard(
    shard: int, tag: str, start: int, count: int = 1, at_least: int = 0
) -> list[int]:
    """Add products (`at_least` of them, then more) until `count` landed on `shard`: ids are
    hashed to shards, so a fixed number of products can all miss the shard under test."""
    ids: list[int] = []
    n = start
    while len(ids) < at_least or len(on_shard(shard, ids)) < count:
        ids.append(add_product(tag, n).pk)
        n += 1
    return ids


def wait_searchable(timeout: float = 120.0) -> None:
    """Every product indexed in the database (logged) and applied by the shards: text
    search finds products by their words too, so only the shards show they hold them."""
    wait(
        lambda: set(Product.objects.values_list("index_state", flat=True)) == {IndexState.INDEXED},
        timeout,
        "the catalog to be indexed",
    )
    wait(shards_match_database, timeout, "the shards to hold the catalog")
