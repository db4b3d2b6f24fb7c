"""Hybrid text search against real workers (tiny CLIP): both rankings fused, filters on
both sides, the SKU first, pages and facets over the fused list."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.models import Category
from catalog.services.images import image_add_upload
from catalog.services.products import product_create
from tests.support.images import image_bytes
from tests.support.indexing import wait_searchable

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
COLOURS = [(220, 30, 30), (30, 200, 40), (30, 40, 220), (230, 210, 30), (120, 50, 160)]
BRANDS = ["Aster", "Aster", "Orbit", "Orbit", "Lumen"]


@pytest.fixture
def catalog(shard_workers) -> list[int]:
    category = Category.objects.create(name="Balls", slug="balls")
    ids = []
    for n, (colour, brand) in enumerate(zip(COLOURS, BRANDS, strict=True)):
        product = product_create(
            sku=f"HYB-{n}",
            title=f"Ball {n}" + (" teapot" if n == 4 else ""),
            price=Decimal(10 + n),
            category=category,
            brand=brand,
        )
        upload = SimpleUploadedFile(f"{n}.png", image_bytes("PNG", colour=colour), "image/png")
        image_add_upload(product=product, upload=upload)
        ids.append(product.pk)
    wait_searchable()
    return ids


def ids_of(body: dict) -> list[int]:
    return [hit["product"]["id"] for hit in body["results"]]


def get(api_client, **params) -> dict:
    response = api_client.get("/api/search/", params)
    assert response.status_code == 200, response.content
    return response.json()


def test_hybrid_fuses_words_and_pictures(api_client, catalog):
    vector = get(api_client, q="teapot", mode="vector", k=10)
    assert sorted(ids_of(vector)) == sorted(catalog)  # every picture is somewhat near
    assert vector["shards"]["answered"] == 2
    keyword = get(api_client, q="teapot", mode="keyword", k=10)
    assert ids_of(keyword) == [catalog[4]]  # the only one with the word

    hybrid = get(api_client, q="teapot", k=10)
    assert hybrid["mode"] == "hybrid"
    assert hybrid["shards"] == {"answered": 2, "total": 2, "missing": []}
    assert sorted(ids_of(hybrid)) == sorted(catalog)
    # Found by both: ahead of every product the pictures alone found, whatever the tiny
    # model's order (1/61 + 1/65 at worst against 1/61 at best).
    assert ids_of(hybrid)[0] == catalog[4]
    scores = [hit["score"] for hit in hybrid["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < s <= 1 for s in scores)
    for hit in hybrid["results"]:
        assert hit["image"].endswith(".png")

    # A SKU typed into the box comes first in hybrid mode too.
    assert ids_of(get(api_client, q="hyb-2", k=10))[0] == catalog[2]

    # Filters apply to both sides, the brand (which the shards do not keep) included.
    aster = get(api_client, q="teapot", brand="aster", k=10)
    assert sorted(ids_of(aster)) == catalog[:2]
    assert {f["value"]: f["count"] for f in aster["facets"]["brand"]} == {"Aster": 2}
    cheap = get(api_client, q="teapot", max_price="12", k=10)
    assert sorted(ids_of(cheap)) == catalog[:3]

    # Pages of the fused list: disjoint, in order, the same on a second request.
    whole = ids_of(get(api_client, q="ball", k=10))
    pages = [ids_of(get(api_client, q="ball", k=2, page=n)) for n in (1, 2, 3)]
    assert pages[0] + pages[1] + pages[2] == whole
    assert ids_of(get(api_client, q="ball", k=2, page=2)) == pages[1]
    by_price = ids_of(get(api_client, q="ball", k=10, sort="-price"))
    assert by_price == catalog[::-1]
