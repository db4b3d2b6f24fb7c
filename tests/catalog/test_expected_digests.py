"""The database side of reconciliation hashes rows exactly as the shard side does."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from django.test import override_settings

from catalog.models import Category, Embedding, IndexState, Product, ProductImage
from catalog.services.expected_digests import expected_digests
from workers.index.digest import Digest, compare
from workers.index.log import shard_for_product
from workers.index.types import VectorAttrs

pytestmark = pytest.mark.django_db

PRICES = ["0.10", "0.07", "19.99", "1234567.89", "9999999999.99", "5.00", "0.00", "333.33"]


def _row(n: int, price: str, category: Category | None, **product: object) -> ProductImage:
    p = Product.objects.create(
        sku=f"E-{n}", title=f"E {n}", price=Decimal(price), category=category, **product
    )
    image = ProductImage.objects.create(product=p, source_url=f"https://img.test/{n}.jpg")
    Embedding.objects.create(image=image, model="m", dim=4, vector=b"\0" * 16, source_sha256="x")
    return image


@override_settings(SEARCH_SHARDS=2)
def test_database_rows_hash_like_the_attributes_the_encode_task_publishes():
    category = Category.objects.create(name="C", slug="c")
    images = [
        _row(n, price, category if n % 2 else None, in_stock=bool(n % 3))
        for n, price in enumerate(PRICES)
    ]
    _row(90, "1.00", None, is_active=False)  # not for the index
    failed = _row(91, "1.00", None)
    ProductImage.objects.filter(pk=failed.pk).update(error="decode: broken")  # never published
    Product.objects.update(index_state=IndexState.INDEXED)
    Product.objects.filter(pk=images[0].product_id).update(index_state=IndexState.ENCODING)
    Product.objects.filter(pk=images[1].product_id).update(index_state=IndexState.PENDING)

    found = expected_digests("m", 4)

    for shard in (0, 1):
        mine = [i for i in images if shard_for_product(i.product_id, 2) == shard]
        products = [Product.objects.get(pk=i.product_id) for i in mine]
        published = Digest.of(  # as catalog.services.indexing._publish builds its upserts
            np.asarray([i.pk for i in mine], dtype=np.int64),
            VectorAttrs.build(
                product_ids=[p.pk for p in products],
                category_ids=[p.category_id if p.category_id is not None else -1 for p in products],
                prices=[float(p.price) for p in products],
                in_stock=[p.in_stock for p in products],
            ),
        )
        assert compare(found[shard].digest, published).clean
        np.testing.assert_array_equal(
            found[shard].product_ids, [i.product_id for i in sorted(mine, key=lambda i: i.pk)]
        )
        in_flight = dict(zip(found[shard].digest.ids.tolist(), found[shard].in_flight, strict=True))
        for image in mine:  # their update is under way: encoding, pending
            assert in_flight[image.pk] == (image in images[:2])
    assert sum(len(f.digest) for f in found.values()) == len(PRICES)
