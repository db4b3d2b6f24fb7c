"""Products and images as JSON-ready dicts, without DRF's per-field machinery.

A search answer carries up to 100 products; DRF's generic ``to_representation`` walks
~20 field objects per product and rebuilds the fields of every serializer instance, about
4 ms of CPU per 20-product answer here, the largest cost of a search request. These
functions produce exactly what the serializers' generic path would (a test compares the
two on varied products); the serializers keep describing fields for validation and the
OpenAPI schema, and call these for output.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from django.http import HttpRequest
from django.utils import timezone

from catalog.models import Product, ProductImage
from catalog.services.products import EDITABLE_FIELDS

PRODUCT_FIELDS = (
    "id",
    *EDITABLE_FIELDS,
    "images",
    "index_state",
    "index_error",
    "created_at",
    "updated_at",
)
IMAGE_FIELDS = ("id", "url", "source_url", "position", "sha256", "width", "height", "error")
# Operational detail (indexing state, why an image failed) shown to staff only.
STAFF_ONLY_PRODUCT_FIELDS = ("index_state", "index_error")
STAFF_ONLY_IMAGE_FIELDS = ("error",)
_CENTS = Decimal("0.01")


def is_staff(request: HttpRequest | None) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


def for_viewer(product: dict, request: HttpRequest | None) -> dict:
    """A product representation (or cached card) as this request may see it: without the
    staff-only fields unless the request is a staff user's (none without a request)."""
    if is_staff(request):
        return product
    out = _without(product, STAFF_ONLY_PRODUCT_FIELDS)
    if "images" in out:
        out["images"] = [_without(image, STAFF_ONLY_IMAGE_FIELDS) for image in out["images"]]
    return out


def card_for_viewer(card: dict, request: HttpRequest | None, *, staff: bool) -> dict:
    """A cached card as a search shows it, in new dicts (the card is left as it is): the
    staff-only fields dropped unless `staff`, image URLs made absolute for `request`."""
    hidden = () if staff else STAFF_ONLY_PRODUCT_FIELDS
    hidden_image = () if staff else STAFF_ONLY_IMAGE_FIELDS
    out = {name: value for name, value in card.items() if name not in hidden}
    out["images"] = [
        {
            name: absolute_url(value, request) if name == "url" else value
            for name, value in image.items()
            if name not in hidden_image
        }
        for image in card["images"]
    ]
    return out


def image_for_viewer(image: dict, request: HttpRequest | None) -> dict:
    return image if is_staff(request) else _without(image, STAFF_ONLY_IMAGE_FIELDS)


def _without(data: dict, names: tuple[str, ...]) -> dict:
    return {k: v for k, v in data.items() if k not in names}


def image_url(image: ProductImage, request: HttpRequest | None) -> str | None:
    """The stored file's URL (absolute given a request), else the source URL, else None."""
    if image.image:
        return absolute_url(image.image.url, request)
    return image.source_url or None


def absolute_url(url: str | None, request: HttpRequest | None) -> str | None:
    """A site-relative URL (a stored file's) made absolute for this request; others as is."""
    if url and request is not None and url.startswith("/"):
        return request.build_absolute_uri(url)
    return url


def image_representation(image: ProductImage, request: HttpRequest | None) -> dict:
    return {
        "id": image.pk,
        "url": image_url(image, request),
        "source_url": image.source_url,
        "position": image.position,
        "sha256": image.sha256,
        "width": image.width,
        "height": image.height,
        "error": image.error,
    }


def product_representation(
    product: Product, request: HttpRequest | None, images: list[ProductImage] | None = None
) -> dict:
    """One product with its images (given, or prefetch ``images``; select ``category``)."""
    out: dict[str, object] = {}
    for name in PRODUCT_FIELDS:
        if name == "id":
            out[name] = product.pk
        elif name == "category":
            out[name] = product.category.slug if product.category_id else None
        elif name == "price":
            out[name] = _money(product.price)
        elif name == "images":
            shown = product.images.all() if images is None else images
            out[name] = [image_representation(i, request) for i in shown]
        elif name in ("created_at", "updated_at"):
            out[name] = _datetime(getattr(product, name))
        else:
            out[name] = getattr(product, name)
    return out


def _money(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return format(Decimal(value).quantize(_CENTS, rounding=ROUND_HALF_EVEN), "f")


def _datetime(value: datetime | None) -> str | None:
    """ISO 8601 in the current time zone, UTC written as Z (DRF's default format)."""
    if value is None:
        return None
    if timezone.is_aware(value):
        value = value.astimezone(timezone.get_current_timezone())
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
