"""The fast product/image representation equals what DRF's generic serializer path gives."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.files.base import ContentFile
from django.test import RequestFactory
from rest_framework import serializers

from catalog.api.representation import STAFF_ONLY_IMAGE_FIELDS, STAFF_ONLY_PRODUCT_FIELDS
from catalog.api.serializers import ProductImageSerializer, ProductSerializer
from catalog.models import Category, Product, ProductImage
from tests.support.images import image_bytes

pytestmark = pytest.mark.django_db


def generic(serializer_class, instance, context) -> dict:
    """DRF's own field-by-field representation (what the serializer did before)."""
    return dict(
        serializers.ModelSerializer.to_representation(serializer_class(context=context), instance)
    )


def catalog() -> list[Product]:
    shoes = Category.objects.create(name="Shoes", slug="shoes")
    plain = Product.objects.create(sku="P-1", title="Plain", price=Decimal("10"))
    rich = Product.objects.create(
        sku="P-2",
        title="Rich ünïcode",
        description="long\ntext",
        brand="Acme",
        category=shoes,
        price=Decimal("1234567.5"),
        currency="EUR",
        in_stock=False,
        attributes={"colour": "red", "sizes": [40, 41], "nested": {"a": None}},
        index_error="",
    )
    ProductImage.objects.create(
        product=rich, image=ContentFile(image_bytes(), name="front.png"), position=0, width=64
    )
    ProductImage.objects.create(
        product=rich, source_url="https://img.example/b.jpg", position=1, error="timeout"
    )
    cheap = Product.objects.create(sku="P-3", title="Cheap", price=Decimal("0.05"))
    ProductImage.objects.create(product=cheap, source_url="https://img.example/c.jpg")
    return list(
        Product.objects.select_related("category")
        .prefetch_related("images")
        .filter(pk__in=[plain.pk, rich.pk, cheap.pk])
    )


@pytest.mark.parametrize("viewer", ["staff", "anonymous", None])
def test_fast_representation_equals_drf_generic(viewer: str | None) -> None:
    """Equal for staff; for anyone else (and with no request) the generic output without
    the staff-only fields."""
    request = RequestFactory().get("/api/search/", HTTP_HOST="testserver")
    request.user = User(username="u", is_staff=True) if viewer == "staff" else AnonymousUser()
    context = {"request": request} if viewer else {}
    products = catalog()
    for product in products:
        fast = ProductSerializer(product, context=context).data
        slow = generic(ProductSerializer, product, context)
        slow["images"] = [
            generic(ProductImageSerializer, image, context) for image in product.images.all()
        ]
        if viewer != "staff":
            slow = {k: v for k, v in slow.items() if k not in STAFF_ONLY_PRODUCT_FIELDS}
            slow["images"] = [
                {k: v for k, v in i.items() if k not in STAFF_ONLY_IMAGE_FIELDS}
                for i in slow["images"]
            ]
        assert list(fast) == list(slow)  # same fields, same order
        assert dict(fast) == slow
    urls = [
        i["url"] for p in products for i in ProductSerializer(p, context=context).data["images"]
    ]
    assert any(u and u.startswith("http://testserver/") for u in urls) == bool(viewer)


def test_fields_match_the_schema() -> None:
    declared = ProductSerializer().fields
    assert list(declared) == list(ProductSerializer.Meta.fields)
    assert list(ProductImageSerializer().fields) == list(ProductImageSerializer.Meta.fields)
