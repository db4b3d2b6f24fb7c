"""Reads that are more than one query."""

from __future__ import annotations

from django.db.models import Count
from django.http import Http404
from django.shortcuts import get_object_or_404

from catalog.models import Category, Product


def catalog_summary() -> dict[str, object]:
    states = dict(Product.objects.values_list("index_state").annotate(n=Count("id")).order_by())
    return {
        "products": sum(states.values()),
        "categories": Category.objects.count(),
        "index_states": states,
    }


def product_for_page(product_id: int, *, staff: bool) -> Product:
    """A product with its category and images; Http404 unless it is active (staff see all)."""
    if not 0 < product_id < 2**63:  # the URL takes any digits; the database would overflow
        raise Http404("No such product.")
    products = Product.objects.select_related("category").prefetch_related("images")
    if not staff:
        products = products.filter(is_active=True)
    return get_object_or_404(products, pk=product_id)
