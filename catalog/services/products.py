"""Product writes. Every write validates, saves, and schedules the index update.

A write to an existing product first locks its row and works on that fresh copy: an
instance loaded before a concurrent delete would otherwise be saved back (Django's
`save()` falls back to an INSERT when the UPDATE finds no row), undoing the delete. A
product that is gone by then is a 404.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.shortcuts import get_object_or_404

from catalog.models import Category, IndexState, Product, index_state_change
from catalog.services.categories import lock_category
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


def lock_product(product_id: int, *, for_delete: bool = False) -> Product:
    """The product's row, locked until the transaction ends; Http404 if it is gone.

    Writes that keep the row take FOR NO KEY UPDATE, which lets rows that point at it
    (images, embeddings) be inserted meanwhile; a delete takes FOR UPDATE. SQLite has no
    row locks: there the IMMEDIATE transactions (settings) serialise the writers.
    """
    rows = Product.objects.select_for_update(no_key=not for_delete)
    return get_object_or_404(rows, pk=product_id)


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
    if category is not None:
        category = lock_category(category.pk, field="category")
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
    if changes.get("category") is not None:
        changes["category"] = lock_category(changes["category"].pk, field="category")
    product = lock_product(product.pk)
    for field, value in changes.items():
        setattr(product, field, value)
    if "currency" in changes:
        product.currency = product.currency.upper()
    if product.is_active:
        for field, value in index_state_change(IndexState.PENDING).items():
            setattr(product, field, value)
    product.full_clean()
    product.save(force_update=True)
    if product.is_active:
        enqueue_encoding([product.pk])
    else:
        enqueue_removal([product.pk])
    return product


@transaction.atomic
def product_delete(*, product: Product) -> None:
    """Delete a product; its images leave the index (their ids are taken before the rows go)."""
    product = lock_product(product.pk, for_delete=True)
    product_id = product.pk
    image_ids = list(product.images.values_list("pk", flat=True))
    product.delete()
    enqueue_image_removal(product_id=product_id, image_ids=image_ids)


@transaction.atomic
def products_reencode(*, product_ids: list[int]) -> int:
    """Queue products for encoding again (admin action, `manage.py encode`)."""
    count = Product.objects.filter(pk__in=product_ids, is_active=True).update(
        **index_state_change(IndexState.PENDING), index_error=""
    )
    enqueue_encoding(
        Product.objects.filter(pk__in=product_ids, is_active=True).values_list("pk", flat=True)
    )
    return count


@transaction.atomic
def products_remove_from_index(*, product_ids: list[int]) -> int:
    """Take products out of search without deleting them: they are deactivated."""
    count = Product.objects.filter(pk__in=product_ids).update(
        is_active=False, **index_state_change(IndexState.REMOVED)
    )
    enqueue_removal(product_ids)
    return count
