"""Extra admin pages."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from catalog.model_in_use import model_in_use_or_configured
from catalog.search_health import history_charts, replica_rows, shard_rows


def search_health(request: HttpRequest) -> HttpResponse:
    """The CLIP model in use, per-shard state, recall and latency history, and links to
    Flower and /metrics."""
    context = {
        **admin.site.each_context(request),
        "title": "Search health",
        "model": model_in_use_or_configured(),
        "shards": shard_rows(),
        "replicas": replica_rows(),
        "charts": history_charts(),
        "flower_url": settings.FLOWER_URL,
    }
    return TemplateResponse(request, "admin/search_health.html", context)
