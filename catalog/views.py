"""HTML pages for shoppers (the JSON API lives in catalog/api/)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import ensure_csrf_cookie

from catalog.api.representation import image_url, is_staff
from catalog.model_in_use import model_in_use_or_configured
from catalog.models import Category
from catalog.search import similar_products
from catalog.selectors import catalog_summary, product_for_page

SIMILAR_ON_PAGE = 8


def _site(request: HttpRequest) -> dict[str, object]:
    """What every shopper page shows around its content: the model searches run on (with
    its warning) and, for staff only, the links to the admin and Flower."""
    return {
        "model": model_in_use_or_configured(),
        "staff": is_staff(request),
        "flower_url": settings.FLOWER_URL,
    }


@ensure_csrf_cookie
def search_page(request: HttpRequest) -> HttpResponse:
    """The shopper's search; it talks to /api/search/ from the browser."""
    return render(
        request,
        "catalog/search.html",
        {
            **_site(request),
            "categories": Category.objects.order_by("name"),
            "summary": catalog_summary(),
        },
    )


def product_page(request: HttpRequest, pk: int) -> HttpResponse:
    """One product: its pictures, title, price, brand, category, and more like it."""
    staff = is_staff(request)
    product = product_for_page(pk, staff=staff)
    cards = similar_products(product.pk, SIMILAR_ON_PAGE) if product.is_active else None
    return render(
        request,
        "catalog/product.html",
        {
            **_site(request),
            "product": product,
            "images": [url for url in (image_url(i, None) for i in product.images.all()) if url],
            "attributes": _attributes(product.attributes),
            "similar": None if cards is None else [_tile(card) for card in cards],
            "back_url": _back_url(request),
        },
    )


def _attributes(attributes: object) -> list[tuple[str, str]]:
    """The product's attributes as (label, text) rows, in name order."""
    if not isinstance(attributes, dict):
        return []
    return [(str(name).replace("_", " "), str(attributes[name])) for name in sorted(attributes)]


def _tile(card: dict) -> dict[str, object]:
    """What a "more like this" tile shows of a product card (catalog/product_cache.py)."""
    images = card.get("images") or []
    return {
        "id": card["id"],
        "title": card["title"],
        "price": card["price"],
        "currency": card["currency"],
        "image": images[0]["url"] if images else None,
    }


def _back_url(request: HttpRequest) -> str:
    """The search the shopper came from (its address keeps the query), else the search page."""
    home = reverse("catalog:home")
    referrer = request.META.get("HTTP_REFERER", "")
    allowed = url_has_allowed_host_and_scheme(
        referrer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    if allowed and urlsplit(referrer).path == home:
        return referrer
    return home
