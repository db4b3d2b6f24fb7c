"""HTML pages (the JSON API lives in catalog/api/)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from catalog.models import Category
from catalog.selectors import catalog_summary


@ensure_csrf_cookie
def search_page(request: HttpRequest) -> HttpResponse:
    """The shopper's page; it talks to /api/search/ from the browser."""
    return render(
        request,
        "catalog/search.html",
        {
            "categories": Category.objects.order_by("name"),
            "summary": catalog_summary(),
            "flower_url": settings.FLOWER_URL,
        },
    )
