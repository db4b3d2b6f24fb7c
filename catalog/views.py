"""HTML pages (the JSON API lives in catalog/api/)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from catalog.selectors import catalog_summary


def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "catalog/home.html",
        {"summary": catalog_summary(), "flower_url": settings.FLOWER_URL},
    )
