"""Facet counts over a matched set of products: category, brand, price bucket, in stock.

Counted over the products the search matched (after every filter, up to the paging
depth), so each count is how many results that choice would leave.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import numpy as np

FACETS = ("category", "brand", "price", "in_stock")
# Bucket edges of the price facet, in the catalog's currency units; the last is open.
PRICE_EDGES = np.array([0, 25, 50, 100, 250, 500], dtype=np.float64)


class MatchedProduct(NamedTuple):
    """What the facets and the price sort read of a matched product (a tuple: a search
    makes one per candidate, up to the depth, and a frozen dataclass is slower to make)."""

    id: int
    price: float
    category_slug: str | None
    category_name: str | None
    brand: str
    in_stock: bool


def price_bucket(index: int) -> dict[str, object]:
    """The bucket's value ("25-50", "500-"), its bounds (max None: open) and a label."""
    low = int(PRICE_EDGES[index])
    high = int(PRICE_EDGES[index + 1]) if index + 1 < len(PRICE_EDGES) else None
    if high is None:
        return {"value": f"{low}-", "label": f"{low} and up", "min": low, "max": None}
    label = f"Under {high}" if low == 0 else f"{low} to {high}"
    return {"value": f"{low}-{high}", "label": label, "min": low, "max": high}


def facet_counts(products: list[MatchedProduct], names: tuple[str, ...]) -> dict[str, list]:
    """For each facet in `names`, its values with their counts (most common first, then
    by label; price buckets and stock in their own order); values with no product are left out."""
    out: dict[str, list] = {}
    if "category" in names:
        categories = Counter(
            (p.category_slug, p.category_name) for p in products if p.category_slug
        )
        out["category"] = [
            {"value": slug, "label": name, "count": n}
            for (slug, name), n in sorted(categories.items(), key=lambda i: (-i[1], i[0][1]))
        ]
    if "brand" in names:
        brands = Counter(p.brand for p in products if p.brand)
        out["brand"] = [
            {"value": brand, "label": brand, "count": n}
            for brand, n in sorted(brands.items(), key=lambda i: (-i[1], i[0]))
        ]
    if "price" in names:
        prices = np.array([p.price for p in products], dtype=np.float64)
        index = np.searchsorted(PRICE_EDGES, prices, side="right") - 1
        counts = np.bincount(index, minlength=len(PRICE_EDGES)) if len(index) else []
        out["price"] = [{**price_bucket(i), "count": int(n)} for i, n in enumerate(counts) if n]
    if "in_stock" in names:
        stock = Counter(p.in_stock for p in products)
        out["in_stock"] = [
            {"value": value, "label": label, "count": stock[value]}
            for value, label in ((True, "In stock"), (False, "Out of stock"))
            if stock[value]
        ]
    return out
