"""What each shard should hold, read from the database: the digest of every active
product's published image vectors (workers/index/digest.py), hashed exactly as the
replicas hash their columns.

One query over the embeddings joined with their products, read in chunks into
arrays; the attributes go through `VectorAttrs.build` like the encode task's upserts
do (a price becomes the float32 the shard stores). Images with an error are
left out, as the encode task leaves them out of its upserts.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

import numpy as np
from django.conf import settings
from django.db.models import FloatField
from django.db.models.functions import Cast

from catalog.models import IN_FLIGHT_STATES, Embedding
from workers.index.digest import Digest
from workers.index.log import shard_for_product
from workers.index.types import VectorAttrs

READ_CHUNK = 50_000  # database rows turned into arrays at a time


@dataclass(frozen=True)
class Expected:
    """What one shard should hold: the digest, and per row its product and whether the
    product's own update is under way."""

    digest: Digest
    product_ids: np.ndarray  # int64, aligned with digest.ids
    in_flight: np.ndarray  # bool, aligned with digest.ids


def expected_digests(model: str, dim: int) -> dict[int, Expected]:
    """Per shard, the digest of every active product's published image vectors."""
    rows = (
        Embedding.objects.filter(
            model=model, dim=dim, image__product__is_active=True, image__error=""
        )
        # The price as the database's double: no Decimal per row (a quarter of the read).
        # Both databases convert a numeric to the nearest double, as float(Decimal) does.
        .annotate(price_float=Cast("image__product__price", FloatField()))
        .values_list(
            "image_id",
            "image__product_id",
            "image__product__category_id",
            "price_float",
            "image__product__in_stock",
            "image__product__index_state",
        )
        .order_by()
    )
    in_flight_states = {str(s) for s in IN_FLIGHT_STATES}
    parts: list[tuple[np.ndarray, ...]] = []
    it = rows.iterator(chunk_size=READ_CHUNK)
    while chunk := list(islice(it, READ_CHUNK)):
        images, products, categories, prices, stock, states = zip(*chunk, strict=True)
        n = len(chunk)
        parts.append(
            (
                np.fromiter(images, dtype=np.int64, count=n),
                np.fromiter(products, dtype=np.int64, count=n),
                np.fromiter((-1 if c is None else c for c in categories), np.int64, count=n),
                np.fromiter(prices, dtype=np.float64, count=n),
                np.fromiter(stock, dtype=bool, count=n),
                np.fromiter((s in in_flight_states for s in states), dtype=bool, count=n),
            )
        )
    if not parts:
        parts.append(tuple(np.zeros(0, dtype=t) for t in (*[np.int64] * 3, np.float64, bool, bool)))
    images, products, categories, prices, stock, in_flight = (
        np.concatenate(column) for column in zip(*parts, strict=True)
    )
    order = np.argsort(images, kind="stable")
    images, products, in_flight = images[order], products[order], in_flight[order]
    attrs = VectorAttrs.build(products, categories[order], prices[order], stock[order])
    unique, inverse = np.unique(products, return_inverse=True)
    shard_of_product = np.fromiter(
        (shard_for_product(p, settings.SEARCH_SHARDS) for p in unique.tolist()),
        dtype=np.int64,
        count=unique.size,
    )
    shards = shard_of_product[inverse]
    found = {}
    for shard in range(settings.SEARCH_SHARDS):
        mine = shards == shard
        found[shard] = Expected(
            Digest.of(images[mine], attrs.take(mine)), products[mine], in_flight[mine]
        )
    return found
