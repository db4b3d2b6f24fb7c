"""Text search: the lexical and CLIP rankings fused, filtered, faceted, sorted and paged.

Every request ranks the whole candidate list (up to SEARCH_MAX_DEPTH products per side)
and then cuts its page out of it, so a page never depends on which pages came before:
the same query over the same catalog gives the same order (ties by product id), and
the facets count the whole matched list, not one page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connections
from django.db.models import Exists, FloatField, OuterRef, QuerySet
from django.db.models.functions import Cast

from catalog import lexical, product_cache, search
from catalog.facets import FACETS, MatchedProduct, facet_counts
from catalog.id_list import id_list
from catalog.lexical.fusion import fuse
from catalog.lexical.words import NOTHING, LexicalRanking
from catalog.models import Product, ProductImage
from catalog.selectors import equal_in_any_case
from workers.index.types import SearchFilter
from workers.rpc.protocol import DEFAULT_LIMITS

MODES = ("hybrid", "vector", "keyword")
SORTS = ("relevance", "price", "-price")


def max_depth() -> int:
    """How deep results can be paged: SEARCH_MAX_DEPTH, at most what one shard call returns."""
    return min(settings.SEARCH_MAX_DEPTH, DEFAULT_LIMITS.max_k)


@dataclass(frozen=True)
class TextQuery:
    text: str
    filters: SearchFilter
    brand: str | None = None
    mode: str = "hybrid"
    sort: str = "relevance"
    page: int = 1
    page_size: int = 20
    facets: tuple[str, ...] = FACETS


@dataclass(frozen=True)
class TextResults:
    hits: list[search.Hit]  # this page's
    matched: int  # products matched, at most the depth
    depth: int
    facets: dict[str, list]
    took_ms: float
    answered: int  # shards: none are asked in keyword mode
    total: int
    missing: tuple[int, ...] = ()

    @property
    def partial(self) -> bool:
        return self.answered < self.total


def matching_products(filters: SearchFilter, brand: str | None) -> QuerySet:
    """The active products with a picture that pass every filter: what either side may
    return (the shards filter the same way, less the brand, which they do not keep)."""
    products = Product.objects.filter(
        Exists(ProductImage.objects.filter(product=OuterRef("pk"))), is_active=True
    )
    if filters.category_ids is not None:
        products = products.filter(category_id__in=filters.category_ids)
    if filters.min_price is not None:
        products = products.filter(price__gte=filters.min_price)
    if filters.max_price is not None:
        products = products.filter(price__lte=filters.max_price)
    if filters.in_stock is not None:
        products = products.filter(in_stock=filters.in_stock)
    if brand:
        products = equal_in_any_case(products, "brand", brand)
    return products


def _matched(products: QuerySet, ids: list[int]) -> dict[int, MatchedProduct]:
    """What the facets and the price sort read of the candidates that pass the filters.

    Up to twice the depth of ids: they go as one parameter (`catalog.id_list`), and the
    rows are read from the cursor, without Django's per-row converters. The price comes
    as a float (a Decimal per row cost a large share of the query), which orders
    two-decimal prices as they are."""
    if not ids:
        return {}
    as_float = Cast("price", FloatField())
    rows = (
        products.filter(pk__in=id_list(products.db, ids))
        .order_by()
        .values_list("pk", as_float, "category__slug", "category__name", "brand", "in_stock")
    )
    sql, params = rows.query.sql_with_params()
    with connections[products.db].cursor() as cursor:
        cursor.execute(sql, params)
        return {
            pid: MatchedProduct(pid, price, slug, name, brand, bool(in_stock))
            for pid, price, slug, name, brand, in_stock in cursor.fetchall()
        }


def _sku_match(products: QuerySet, text: str) -> int | None:
    """The product whose SKU is the query (any case), if it passes the filters. A SKU is
    one word: a query of several asks nothing."""
    text = text.strip()
    if len(text.split()) != 1 or len(text) > Product._meta.get_field("sku").max_length:
        return None
    return _sku_lookup(products, text).first()


def _sku_lookup(products: QuerySet, text: str) -> QuerySet:
    """The ids of `products` whose SKU is `text` in any case, through its index."""
    return equal_in_any_case(products, "sku", text).values_list("pk", flat=True)


def by_words_then_fused(
    fused: list[tuple[int, float]], words: LexicalRanking
) -> list[tuple[int, float]]:
    """Products with more of the query's words first; the fused rank orders those with
    as many (and those only the pictures found, with none, come last).

    So the pictures decide where the words cannot: among the products that all have
    "Aster" for "Aster shoes" (no title says shoes), never against a product that has
    every word. The relevance shown, (words matched + fused) / (words + 1), stays in
    (0, 1] and falls down the list."""
    if not words.words:
        return fused
    ordered = sorted(fused, key=lambda item: (-words.words_matched.get(item[0], 0), -item[1]))
    scale = words.words + 1
    return [(pid, (words.words_matched.get(pid, 0) + score) / scale) for pid, score in ordered]


def text_search(query: TextQuery) -> TextResults:
    """One page of a text search, with the facets of everything it matched."""
    started = time.perf_counter()
    depth = max_depth()
    products = matching_products(query.filters, query.brand)
    rankings: list[list[int]] = []
    image_of: dict[int, int] = {}
    answered = total = 0
    missing: tuple[int, ...] = ()
    if query.mode in ("hybrid", "vector"):
        vector = search.text_vector(query.text)
        found = search.vector_ranking(vector, k=depth, filters=query.filters)
        rankings.append(found.product_ids)
        image_of = dict(zip(found.product_ids, found.image_ids, strict=True))
        answered, total, missing = found.answered, found.total, found.missing
    words = NOTHING
    if query.mode in ("hybrid", "keyword"):
        words = lexical.ranked(query.text, products, depth)
        rankings.append(words.product_ids)
    fused = by_words_then_fused(fuse(rankings), words)
    sku_hit = _sku_match(products, query.text) if query.mode != "vector" else None
    if sku_hit is not None:  # a SKU typed into the box: that product first
        fused = [(sku_hit, 1.0)] + [(pid, score) for pid, score in fused if pid != sku_hit]
    # Every candidate is checked (the shards keep no brand): the depth counts survivors.
    matched = _matched(products, [pid for pid, _ in fused])
    ranked = [(pid, score) for pid, score in fused if pid in matched][:depth]
    if query.sort != "relevance":
        sign = 1 if query.sort == "price" else -1
        ranked.sort(key=lambda item: (sign * matched[item[0]].price, item[0]))
    start = (query.page - 1) * query.page_size
    page = ranked[start : start + query.page_size]
    cards = product_cache.cards(search.rpc_redis(), [pid for pid, _ in page])
    hits = [search.Hit(cards[pid], score, image_of.get(pid)) for pid, score in page if pid in cards]
    return TextResults(
        hits=hits,
        matched=len(ranked),
        depth=depth,
        facets=facet_counts([matched[pid] for pid, _ in ranked], query.facets),
        took_ms=(time.perf_counter() - started) * 1e3,
        answered=answered,
        total=total,
        missing=missing,
    )
