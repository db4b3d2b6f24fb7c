"""Product writes. Every write validates, saves, and schedules the index update."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction

from catalog.models import Category, IndexState, Product
from catalog.services.enqueue import enqueue_encoding, enqueue_image_removal, enqueue_removal

# What a client may set on a product (the API and the admin write through these).
EDITABLE_FIELDS = (
    "sku",
    "title",
    "description",
    "brand",
    "category",
    "price",
    "currency",
    "in_stock",
    "is_active",
    "attributes",
)


@transaction.atomic
def product_create(
    *,
    sku: str,
    title: str,
    price: Decimal,
    description: str = "",
    brand: str = "",
    category: Category | None = None,
    currency: str = "USD",
    in_stock: bool = True,
    is_active: bool = True,
    attributes: dict[str, Any] | None = None,
) -> Product:
    product = Product(
        sku=sku,
        title=title,
        price=price,
        description=description,
        brand=brand,
        category=category,
        currency=currency.upper(),
        in_stock=in_stock,
        is_active=is_active,
        attributes=attributes or {},
        index_state=IndexState.PENDING,
    )
    product.full_clean()
    product.save()
    enqueue_encoding([product.pk])
    return product


@transaction.atomic
def product_update(*, product: Product, **changes: Any) -> Product:
    """Change some fields; the index learns about it (new attributes, or removal)."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"product_update() got unknown fields: {sorted(unknown)}")
    for field, value in changes.items():
        setattr(product, field, value)
    if "currency" in changes:
        product.currency = product.currency.upper()
    if product.is_active:
        product.index_state = IndexState.PENDING
    product.full_clean()
    product.save()
    if product.is_active:
        enqueue_encoding([product.pk])
    else:
        enqueue_removal([product.pk])
    return product


@transaction.atomic
def product_delete(*, product: Product) -> None:
    """Delete a product; its images leave the index (their ids are taken before the rows go)."""
    product_id = product.pk
    image_ids = list(product.images.values_list("pk", flat=True))
    product.delete()
    enqueue_image_removal(product_id=product_id, image_ids=image_ids)


@transaction.atomic
def products_reencode(*, product_ids: list[int]) -> int:
    """Queue products for encoding again (admin action, `manage.py encode`)."""
    count = Product.objects.filter(pk__in=product_ids, is_active=True).update(
        index_state=IndexState.PENDING, index_error=""
    )
    enqueue_encoding(
        Product.objects.filter(pk__in=product_ids, is_active=True).values_list("pk", flat=True)
    )
    return count


@transaction.atomic
def products_remove_from_index(*, product_ids: list[int]) -> int:
    """Take products out of search without deleting them: they are deactivated."""
    count = Product.objects.filter(pk__in=product_ids).update(
        is_active=False, index_state=IndexState.REMOVED
    )
    enqueue_removal(product_ids)
    return count
