"""The products and categories API: permissions, validation, filters, pagination."""

from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.models import Category, IndexState, Product
from catalog.services.products import product_create

pytestmark = pytest.mark.django_db


def _product(sku: str, **kw) -> Product:
    kw.setdefault("title", f"Product {sku}")
    kw.setdefault("price", Decimal("10.00"))
    return product_create(sku=sku, **kw)


def test_anonymous_can_read_but_not_write(api_client):
    _product("A-1")
    listing = api_client.get("/api/products/")
    assert listing.status_code == 200
    assert listing.json()["count"] == 1
    created = api_client.post("/api/products/", {"sku": "X", "title": "x", "price": "1.00"})
    assert created.status_code == 401
    assert created.json()["error"] == "not_authenticated"
    assert not Product.objects.filter(sku="X").exists()


def test_authenticated_non_staff_cannot_write(db, api_client):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("shopper", password="pw-shop-12345")
    api_client.force_authenticate(user)
    response = api_client.post("/api/products/", {"sku": "X", "title": "x", "price": "1.00"})
    assert response.status_code == 403


def test_staff_crud_round_trip(staff_client):
    Category.objects.create(name="Shoes", slug="shoes")
    body = {
        "sku": "SH-1",
        "title": "Red sneaker",
        "price": "59.90",
        "currency": "eur",
        "category": "shoes",
        "brand": "Aster",
        "attributes": {"size": 42},
    }
    created = staff_client.post("/api/products/", body, format="json")
    assert created.status_code == 201, created.content
    data = created.json()
    assert data["currency"] == "EUR"
    assert data["category"] == "shoes"
    assert data["index_state"] == IndexState.PENDING

    pid = data["id"]
    patched = staff_client.patch(f"/api/products/{pid}/", {"price": "49.90"}, format="json")
    assert patched.status_code == 200
    assert Product.objects.get(pk=pid).price == Decimal("49.90")

    assert staff_client.delete(f"/api/products/{pid}/").status_code == 204
    assert not Product.objects.filter(pk=pid).exists()
    assert staff_client.get(f"/api/products/{pid}/").status_code == 404


def test_validation_errors_name_each_field(staff_client):
    _product("DUP-1")
    response = staff_client.post(
        "/api/products/",
        {"sku": "DUP-1", "title": "", "price": "-3", "currency": "euro", "category": "nope"},
        format="json",
    )
    assert response.status_code == 400
    fields = response.json()["fields"]
    assert {"sku", "title", "price", "currency", "category"} <= set(fields)


def test_filters_and_ordering(api_client):
    shoes = Category.objects.create(name="Shoes", slug="shoes")
    bags = Category.objects.create(name="Bags", slug="bags")
    _product("S-1", category=shoes, price=Decimal("20"), brand="Aster")
    _product("S-2", category=shoes, price=Decimal("80"), brand="Kobalt", in_stock=False)
    _product("B-1", category=bags, price=Decimal("50"), brand="aster")

    def skus(query: str) -> list[str]:
        response = api_client.get(f"/api/products/?{query}")
        assert response.status_code == 200, response.content
        return [p["sku"] for p in response.json()["results"]]

    assert sorted(skus("category=shoes")) == ["S-1", "S-2"]
    assert sorted(skus("brand=ASTER")) == ["B-1", "S-1"]
    assert skus("in_stock=false") == ["S-2"]
    assert sorted(skus("min_price=30&max_price=80")) == ["B-1", "S-2"]
    assert skus("ordering=price") == ["S-1", "B-1", "S-2"]
    assert skus("ordering=-price") == ["S-2", "B-1", "S-1"]


def test_bad_filter_value_is_400(api_client):
    response = api_client.get("/api/products/?min_price=cheap")
    assert response.status_code == 400
    assert "min_price" in response.json()["fields"]


def test_pagination(api_client):
    for i in range(25):
        _product(f"P-{i:02d}")
    first = api_client.get("/api/products/?page_size=10").json()
    assert first["count"] == 25
    assert len(first["results"]) == 10
    assert first["next"]
    last = api_client.get("/api/products/?page_size=10&page=3").json()
    assert len(last["results"]) == 5
    assert api_client.get("/api/products/?page=99").status_code == 404


def test_categories_api(staff_client):
    from rest_framework.test import APIClient

    anonymous = APIClient()
    shoes = staff_client.post("/api/categories/", {"name": "Shoes", "slug": "shoes"})
    assert shoes.status_code == 201
    child = staff_client.post(
        "/api/categories/", {"name": "Boots", "slug": "boots", "parent": "shoes"}
    )
    assert child.status_code == 201
    cycle = staff_client.patch(
        f"/api/categories/{shoes.json()['id']}/", {"parent": "boots"}, format="json"
    )
    assert cycle.status_code == 400
    assert anonymous.post("/api/categories/", {"name": "X", "slug": "x"}).status_code == 401
    assert [c["slug"] for c in anonymous.get("/api/categories/").json()["results"]] == [
        "boots",
        "shoes",
    ]


def test_nul_bytes_in_slug_lookups_are_400_on_every_database(staff_client):
    """Found by schemathesis on PostgreSQL, which refuses NUL in a query with an error."""
    bad_parent = staff_client.post(
        "/api/categories/", {"name": "X", "slug": "x", "parent": "sh\x00oes"}, format="json"
    )
    assert bad_parent.status_code == 400
    assert "parent" in bad_parent.json()["fields"]
    bad_category = staff_client.post(
        "/api/products/",
        {"sku": "N-1", "title": "n", "price": "1.00", "category": "\x00"},
        format="json",
    )
    assert bad_category.status_code == 400
    assert "category" in bad_category.json()["fields"]


def test_values_the_database_refuses_are_400_not_500() -> None:
    from django.db import DataError

    from catalog.api.errors import exception_handler

    response = exception_handler(DataError("value out of range\nDETAIL: ..."), {})
    assert response.status_code == 400
    assert response.data["detail"] == "the database refused a value: value out of range"


def test_token_is_obtained_with_password(db, api_client):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("staff2", password="pw-staff-456", is_staff=True)
    response = api_client.post("/api/token/", {"username": "staff2", "password": "pw-staff-456"})
    assert response.status_code == 200
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert (
        api_client.post("/api/products/", {"sku": "T-1", "title": "t", "price": "1.00"}).status_code
        == 201
    )
