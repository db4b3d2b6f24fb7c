"""Text search by words (mode=keyword): the lexical index of the database in use (SQLite
FTS5 or PostgreSQL full-text search), SKU first, filters, facets, sorting and pages."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from catalog.models import Category, Product, ProductImage
from workers.index.types import SearchFilter

pytestmark = pytest.mark.django_db

ROWS = [  # sku, title, brand, category, price, in stock
    ("CSV-1", "Red striped t-shirt", "Aster", "shirts", "19.00", True),
    ("CSV-10", "Blue striped t-shirt", "Kobalt", "shirts", "24.50", True),
    ("CSV-2", "Red plain mug", "Aster", "mugs", "8.00", False),
    ("CSV-3", "Green polka-dot mug", "Orbit", "mugs", "12.00", True),
    ("CSV-4", "Red leather watch", "Lumen", "watches", "480.00", True),
    ("CSV-5", "Black watch", "Lumen", "watches", "899.00", True),
]


@pytest.fixture
def products(redis_url) -> dict[str, int]:
    categories = {
        slug: Category.objects.create(name=slug.capitalize(), slug=slug)
        for slug in ("shirts", "mugs", "watches")
    }
    ids = {}
    for n, (sku, title, brand, category, price, stocked) in enumerate(ROWS):
        product = Product.objects.create(
            sku=sku,
            title=title,
            brand=brand,
            category=categories[category],
            price=Decimal(price),
            in_stock=stocked,
            description=f"A {title.lower()}, by {brand}.",
        )
        ProductImage.objects.create(product=product, source_url=f"https://img.test/{n}.png")
        ids[sku] = product.pk
    return ids


def keyword(api_client, q: str, **params) -> dict:
    response = api_client.get("/api/search/", {"q": q, "mode": "keyword", **params})
    assert response.status_code == 200, response.content
    return response.json()


def skus(body: dict) -> list[str]:
    return [hit["product"]["sku"] for hit in body["results"]]


def test_words_rank_products_that_have_them_first(api_client, products):
    body = keyword(api_client, "red striped t-shirt")
    assert skus(body)[0] == "CSV-1"  # every word
    assert set(skus(body)) == {"CSV-1", "CSV-10", "CSV-2", "CSV-4"}  # any word
    assert body["mode"] == "keyword"
    assert body["shards"] == {"answered": 0, "total": 0, "missing": []}  # none asked
    scores = [hit["score"] for hit in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < s <= 1 for s in scores)
    # More of the words first, then the relevance of the words.
    ordered = skus(keyword(api_client, "red mug polka-dot"))
    assert set(ordered[:2]) == {"CSV-2", "CSV-3"}  # two words each: red mug, polka-dot mug
    assert set(ordered[2:]) == {"CSV-1", "CSV-4"}  # red only
    # Stemmed: "mugs" finds "mug"; the brand and the description are searched too.
    assert set(skus(keyword(api_client, "mugs"))) == {"CSV-2", "CSV-3"}
    assert set(skus(keyword(api_client, "lumen"))) == {"CSV-4", "CSV-5"}
    assert skus(keyword(api_client, "nothing-like-this")) == []


def test_a_sku_typed_in_the_box_comes_first(api_client, products):
    assert skus(keyword(api_client, "CSV-1"))[0] == "CSV-1"
    assert skus(keyword(api_client, "csv-10"))[0] == "CSV-10"
    # Unless a filter rules it out.
    assert "CSV-2" not in skus(keyword(api_client, "CSV-2", in_stock="true"))


@pytest.mark.parametrize(
    "q",
    [
        '"red',
        'red"',
        "red*",
        "*",
        "red OR",
        "OR",
        "NEAR(red mug)",
        "NEAR",
        "red AND NOT mug",
        "title:red",
        "-red",
        "^red",
        "red + mug",
        "(red",
        "red & | ! <-> mug",
        "'",
        ":*",
        "\\",
        "{title}: red",
        "CSV-1*",
    ],
)
def test_search_syntax_in_the_box_is_plain_text(api_client, products, q):
    body = keyword(api_client, q)
    if "red" in q.lower().split():  # a word of its own (title:red is the phrase "title red")
        assert "CSV-1" in skus(body) or "CSV-2" in skus(body)


def test_an_edit_is_searchable_at_once_and_a_delete_gone(api_client, products):
    product = Product.objects.get(pk=products["CSV-3"])
    product.title = "Green checked teapot"
    product.save()
    assert skus(keyword(api_client, "teapot")) == ["CSV-3"]
    Product.objects.filter(pk=products["CSV-5"]).update(description="A quartz chronograph")
    assert skus(keyword(api_client, "chronograph")) == ["CSV-5"]
    Product.objects.filter(pk=products["CSV-4"]).delete()
    assert skus(keyword(api_client, "leather")) == []
    Product.objects.filter(pk=products["CSV-1"]).update(is_active=False)
    assert "CSV-1" not in skus(keyword(api_client, "red"))


def test_filters_apply_to_the_words(api_client, products):
    assert skus(keyword(api_client, "red", brand="aster", sort="price")) == ["CSV-2", "CSV-1"]
    assert skus(keyword(api_client, "red", category="watches")) == ["CSV-4"]
    assert set(skus(keyword(api_client, "red", max_price="20"))) == {"CSV-1", "CSV-2"}
    assert set(skus(keyword(api_client, "red", in_stock="false"))) == {"CSV-2"}
    assert skus(keyword(api_client, "red", brand="Nobody")) == []


def test_facets_count_the_matched_products(api_client, products):
    body = keyword(api_client, "red")  # CSV-1, CSV-2, CSV-4
    facets = body["facets"]
    assert {f["value"]: f["count"] for f in facets["brand"]} == {"Aster": 2, "Lumen": 1}
    assert facets["brand"][0]["value"] == "Aster"  # most common first
    assert {f["value"]: f["count"] for f in facets["category"]} == {
        "shirts": 1,
        "mugs": 1,
        "watches": 1,
    }
    assert [(f["value"], f["count"]) for f in facets["price"]] == [("0-25", 2), ("250-500", 1)]
    assert facets["price"][1]["min"] == 250
    assert facets["price"][1]["max"] == 500
    assert [(f["value"], f["count"]) for f in facets["in_stock"]] == [(True, 2), (False, 1)]
    assert body["matched"] == 3
    only = keyword(api_client, "red", facets="brand,in_stock")["facets"]
    assert set(only) == {"brand", "in_stock"}
    assert keyword(api_client, "red", facets="")["facets"] == {}


def test_sorting_by_price_both_ways(api_client, products):
    up = skus(keyword(api_client, "red striped mug watch t-shirt", sort="price"))
    prices = {row[0]: Decimal(row[4]) for row in ROWS}
    assert [prices[s] for s in up] == sorted(prices[s] for s in up)
    down = skus(keyword(api_client, "red striped mug watch t-shirt", sort="-price"))
    assert down == sorted(up, key=lambda s: -prices[s])
    assert len(up) == len(ROWS)


def test_pages_are_stable_and_end_at_the_depth(api_client, products, settings):
    query = "red striped mug watch t-shirt"
    everything = skus(keyword(api_client, query, k=100))
    pages = [keyword(api_client, query, k=4, page=n) for n in (1, 2, 3)]
    assert [skus(p) for p in pages] == [everything[:4], everything[4:], []]
    assert [p["pages"] for p in pages] == [2, 2, 2]
    assert pages[0]["page"] == 1
    assert pages[0]["matched"] == len(ROWS)
    assert skus(keyword(api_client, query, k=4, page=2)) == everything[4:]  # again the same
    settings.SEARCH_MAX_DEPTH = 5
    body = keyword(api_client, query, k=2, page=3)
    assert body["matched"] == 5
    assert body["depth"] == 5
    assert len(body["results"]) == 1
    past = api_client.get("/api/search/", {"q": query, "mode": "keyword", "k": 5, "page": 2})
    assert past.status_code == 400
    assert "depth" in past.json()["fields"]["page"][0]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"mode": "fuzzy"}, "mode"),
        ({"sort": "rating"}, "sort"),
        ({"sort": "ordering"}, "sort"),
        ({"facets": "category,colour"}, "facets"),
        ({"page": "0"}, "page"),
        ({"page": "x"}, "page"),
        ({"brand": "b" * 121}, "brand"),
    ],
)
def test_names_and_values_not_offered_are_400(api_client, params, field):
    response = api_client.get("/api/search/", {"q": "red", **params})
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]


def test_the_words_rank_only_the_products_that_pass_the_filters(products):
    """The lexical side answers from the filtered products alone, and its limit counts
    only those: the view's own check of the candidates comes after the limit."""
    from catalog import lexical
    from catalog.text_search import matching_products

    def ranked(brand: str, limit: int) -> list[int]:
        return lexical.ranked("red", matching_products(SearchFilter(), brand), limit).product_ids

    assert ranked("Lumen", 10) == [products["CSV-4"]]
    assert ranked("Aster", 1) in ([products["CSV-1"]], [products["CSV-2"]])
    Product.objects.filter(pk=products["CSV-4"]).update(is_active=False)
    assert ranked("Lumen", 10) == []
    ProductImage.objects.filter(product_id=products["CSV-2"]).delete()
    assert ranked("Aster", 10) == [products["CSV-1"]]


def test_sqlite_triggers_come_back_after_a_table_rebuild(products):
    """A later migration that rebuilds the product table drops its triggers: every
    `migrate` puts them back and refills the index."""
    if connection.vendor != "sqlite":
        pytest.skip("the FTS5 index is SQLite's")
    from catalog import lexical
    from catalog.lexical import reinstall_after_migrate, sqlite_fts5
    from catalog.lexical.sqlite_fts5 import TRIGGERS

    with connection.cursor() as cursor:
        for name in TRIGGERS:
            cursor.execute("DROP TRIGGER " + name)
    Product.objects.filter(pk=products["CSV-3"]).update(title="Green teapot")
    reinstall_after_migrate(using="default")
    assert sqlite_fts5.install(connection) is False  # all there now
    matching = Product.objects.all()
    assert lexical.ranked("teapot", matching, 10).product_ids == [products["CSV-3"]]


def test_postgres_matches_and_ranks_the_stored_document(products):
    """The words are matched through the GIN index on the stored column, and the ranking
    reads the column as stored: no hit's text is parsed again."""
    if connection.vendor != "postgresql":
        pytest.skip("the GIN index is PostgreSQL's")
    from catalog import lexical
    from catalog.lexical import postgres
    from catalog.text_search import matching_products

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT is_generated, generation_expression FROM information_schema.columns"
            " WHERE table_name = 'catalog_product' AND column_name = %s",
            [postgres.COLUMN],
        )
        generated, expression = cursor.fetchone()
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s", [postgres.INDEX_NAME]
        )
        (definition,) = cursor.fetchone()
    assert generated == "ALWAYS"
    assert "to_tsvector" in expression
    assert "gin" in definition.lower()
    assert postgres.COLUMN in definition
    query = postgres.word_query("red") | postgres.word_query("mug")
    found = Product.objects.annotate(document=postgres.DOCUMENT).filter(document=query)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    assert postgres.INDEX_NAME in found.explain()
    seen: list[str] = []
    with connection.execute_wrapper(lambda run, sql, *rest: seen.append(sql) or run(sql, *rest)):
        ranking = lexical.ranked("red mug", matching_products(SearchFilter(), None), 10)
    assert ranking.product_ids[0] == products["CSV-2"]  # red and mug
    assert set(ranking.product_ids) == {products[s] for s in ("CSV-1", "CSV-2", "CSV-3", "CSV-4")}
    assert seen
    assert not any("to_tsvector" in sql for sql in seen), seen


@pytest.mark.parametrize(
    ("field", "value", "skus", "index"),
    [
        ("sku", "csv-3", {"CSV-3"}, "catalog_product_sku_upper"),  # typed into the box
        ("brand", "ASTER", {"CSV-1", "CSV-2"}, "catalog_product_brand_upper"),  # a filter
    ],
)
def test_any_case_lookups_read_their_index(products, field, value, skus, index):
    """The SKU lookup of a one-word search and the brand filter (text search, products
    API) read the index on UPPER(field), not the table."""
    from catalog.selectors import equal_in_any_case

    found = equal_in_any_case(Product.objects.all(), field, value)
    assert set(found.values_list("sku", flat=True)) == skus
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
    assert index in found.explain()


def test_the_candidates_rows_are_those_of_the_ids_that_pass_the_filters(products):
    """What the facets and the price sort read: one row per candidate id that passes the
    filters, the price a float and the stock a bool on both databases."""
    from catalog.facets import MatchedProduct
    from catalog.text_search import _matched, matching_products

    mugs = Category.objects.get(slug="mugs")
    cheap = matching_products(SearchFilter(max_price=100.0), None)
    asked = [products["CSV-2"], products["CSV-5"], products["CSV-3"], 10**9]  # CSV-5: 899
    rows = _matched(cheap, asked)
    red, green = products["CSV-2"], products["CSV-3"]
    assert rows == {
        red: MatchedProduct(red, 8.0, "mugs", mugs.name, "Aster", False),
        green: MatchedProduct(green, 12.0, "mugs", mugs.name, "Orbit", True),
    }
    assert all(type(row.price) is float and type(row.in_stock) is bool for row in rows.values())
    assert _matched(cheap, []) == {}


def test_a_common_word_is_counted_on_the_other_words_candidates(api_client, products, settings):
    """A word in more than SEARCH_COMMON_WORD_HITS products (here "red", in three) is not
    ranked over all its hits: the rarer words find the candidates, and the common one
    still puts those that have it first."""
    from catalog import lexical
    from catalog.text_search import matching_products

    everything = matching_products(SearchFilter(), None)
    assert set(skus(keyword(api_client, "red mug"))) == {"CSV-1", "CSV-2", "CSV-3", "CSV-4"}
    settings.SEARCH_COMMON_WORD_HITS = 2
    ranked_sql: list[tuple[str, tuple]] = []

    def record(run, sql, params, *rest):
        if "bm25(" in sql or "ts_rank" in sql:
            ranked_sql.append((sql, tuple(params or ())))
        return run(sql, params, *rest)

    with connection.execute_wrapper(record):
        ranking = lexical.ranked("red mug", everything, 10)
    assert ranking.product_ids == [products["CSV-2"], products["CSV-3"]]  # the mugs
    assert ranking.words_matched == {products["CSV-2"]: 2, products["CSV-3"]: 1}
    assert ranked_sql
    assert not any("red" in str(params).lower() for _, params in ranked_sql), ranked_sql
    assert skus(keyword(api_client, "red mug")) == ["CSV-2", "CSV-3"]


def test_common_words_alone_rank_their_newest_hits_that_pass_the_filters(products, settings):
    from catalog import lexical
    from catalog.text_search import matching_products

    settings.SEARCH_COMMON_WORD_HITS = 2

    def ranked(brand: str | None) -> set[int]:
        return set(lexical.ranked("red", matching_products(SearchFilter(), brand), 10).product_ids)

    assert ranked(None) == {products["CSV-4"], products["CSV-2"]}  # of CSV-1, -2 and -4
    assert ranked("Aster") == {products["CSV-1"], products["CSV-2"]}  # filtered, then newest


def test_common_words_alone_rank_the_hits_with_every_word_first(products, settings):
    """The oldest product is the only one with both words: it comes first, then the
    newest with either, as the limit allows."""
    from catalog import lexical
    from catalog.text_search import matching_products

    settings.SEARCH_COMMON_WORD_HITS = 1  # "red" and "striped" are both common
    everything = matching_products(SearchFilter(), None)
    ranking = lexical.ranked("red striped", everything, 10)
    assert ranking.product_ids == [products["CSV-1"], products["CSV-4"]]
    assert ranking.words_matched == {products["CSV-1"]: 2, products["CSV-4"]: 1}
    assert lexical.ranked("red striped", everything, 1).product_ids == [products["CSV-1"]]
