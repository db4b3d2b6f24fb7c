"""Reads are public for active products only, and without the staff-only fields.

Inactive (unreleased) products, their images and their "more like this" are 404 for
anyone but staff; `index_state`, `index_error` and an image's `error` are staff-only in
the products API and in search results (built from cached cards, which keep them).
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.files.base import ContentFile
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from catalog import product_cache
from catalog.api.search import _respond
from catalog.models import Embedding, IndexState, Product, ProductImage
from catalog.search import Hit, SearchPage, rpc_redis
from tests.support.images import image_bytes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("redis_url")]

STAFF_ONLY = {"index_state", "index_error"}


def make(sku: str, *, active: bool) -> Product:
    product = Product.objects.create(
        sku=sku,
        title=f"Secret {sku}" if not active else f"Public {sku}",
        price=Decimal("3"),
        is_active=active,
        index_state=IndexState.FAILED,
        index_error="image 1: decoder exploded",
    )
    image = ProductImage(product=product, error="corrupt: truncated")
    image.image.save(f"{sku}.png", ContentFile(image_bytes("PNG")), save=False)
    image.save()
    Embedding.objects.create(
        image=image, model="m", dim=4, vector=np.ones(4, "<f4").tobytes(), source_sha256="x"
    )
    return product


@pytest.fixture
def products() -> tuple[Product, Product]:
    return make("ON", active=True), make("OFF", active=False)


def test_anonymous_clients_never_see_inactive_products(api_client, products):
    active, inactive = products
    for query in ({}, {"is_active": "false"}, {"is_active": "true"}, {"search": "Secret"}):
        listed = api_client.get("/api/products/", query)
        assert listed.status_code == 200
        ids = [p["id"] for p in listed.json()["results"]]
        assert inactive.pk not in ids, query
    assert [p["id"] for p in api_client.get("/api/products/").json()["results"]] == [active.pk]
    image = inactive.images.get()
    for url in (
        f"/api/products/{inactive.pk}/",
        f"/api/products/{inactive.pk}/images/",
        f"/api/images/{image.pk}/",
        f"/api/products/{inactive.pk}/similar/",
    ):
        response = api_client.get(url)
        assert response.status_code == 404, url
        assert b"Secret" not in response.content


def test_staff_see_inactive_products_and_their_images(staff_client, products):
    _, inactive = products
    listed = staff_client.get("/api/products/", {"is_active": "false"}).json()["results"]
    assert [p["id"] for p in listed] == [inactive.pk]
    assert staff_client.get(f"/api/products/{inactive.pk}/").status_code == 200
    assert staff_client.get(f"/api/products/{inactive.pk}/images/").status_code == 200
    image = inactive.images.get()
    assert staff_client.get(f"/api/images/{image.pk}/").status_code == 200


def test_staff_only_fields_are_absent_for_others(staff_client, products):
    active, _ = products
    api_client = APIClient()  # the `api_client` fixture is the staff client's object
    image = active.images.get()
    public = api_client.get(f"/api/products/{active.pk}/").json()
    assert not STAFF_ONLY & set(public)
    assert "error" not in public["images"][0]
    listed = api_client.get("/api/products/").json()["results"][0]
    assert not STAFF_ONLY & set(listed)
    assert "error" not in listed["images"][0]
    assert "error" not in api_client.get(f"/api/products/{active.pk}/images/").json()[0]
    assert "error" not in api_client.get(f"/api/images/{image.pk}/").json()
    # ... and cannot be learnt by filtering on them either.
    filtered = api_client.get("/api/products/", {"index_state": "indexed"}).json()["results"]
    assert [p["id"] for p in filtered] == [active.pk]

    full = staff_client.get(f"/api/products/{active.pk}/").json()
    assert full["index_state"] == "failed"
    assert full["index_error"] == "image 1: decoder exploded"
    assert full["images"][0]["error"] == "corrupt: truncated"
    assert staff_client.get(f"/api/images/{image.pk}/").json()["error"] == "corrupt: truncated"
    assert staff_client.get("/api/products/", {"index_state": "indexed"}).json()["results"] == []


def test_search_hits_strip_the_staff_only_fields_of_the_cached_cards(products):
    """The answer a search view builds from the real card cache (Redis), per viewer."""
    active, inactive = products
    cards = product_cache.cards(rpc_redis(), [active.pk, inactive.pk])
    assert set(cards) == {active.pk}  # inactive products never make a card
    assert cards[active.pk]["index_state"] == "failed"  # the card keeps everything
    image_id = active.images.get().pk
    page = SearchPage([Hit(cards[active.pk], 0.9, image_id)], took_ms=1.0, answered=1, total=1)

    def answer(user: object) -> dict:
        request = Request(APIRequestFactory().get("/api/search/"), authenticators=[])
        request.user = user
        return _respond(request, page).data["results"][0]["product"]

    shown = answer(AnonymousUser())
    assert not STAFF_ONLY & set(shown)
    assert "error" not in shown["images"][0]
    assert shown["images"][0]["url"].startswith("http://testserver/")  # stored file: absolute
    assert cards[active.pk]["images"][0]["url"].startswith("/")  # the card keeps it relative
    staff = get_user_model().objects.create_user("boss", password="pw-boss-123", is_staff=True)
    assert answer(staff)["index_error"] == "image 1: decoder exploded"
    assert cards[active.pk]["index_state"] == "failed"  # the cached card itself is untouched
