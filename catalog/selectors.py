"""Reads that are more than one query."""

from __future__ import annotations

from django.db.models import Count

from catalog.models import Category, Product


def catalog_summary() -> dict[str, object]:
    states = dict(Product.objects.values_list("index_state").annotate(n=Count("id")).order_by())
    return {
        "products": sum(states.values()),
        "categories": Category.objects.count(),
        "index_states": states,
    }
