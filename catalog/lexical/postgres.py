"""The lexical index on PostgreSQL: full-text search over the products' text, GIN-indexed.

`DOCUMENT` is both the expression the GIN index is built on (migration 0007) and the one
queries match against, so the planner can use the index. User words become `plainto_tsquery`
terms joined by OR: never `to_tsquery` on user input, whose syntax errors would be 500s.
"""

from __future__ import annotations

import functools
import operator

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.models import Model, QuerySet

from catalog.lexical.sqlite_fts5 import MAX_TERMS, WORD

CONFIG = "english"
INDEX_NAME = "catalog_product_text_gin"
# A word in the SKU or title says more than one in the brand, which says more than the
# description (ts_rank's A > B > C weights).
DOCUMENT = (
    SearchVector("sku", weight="A", config=CONFIG)
    + SearchVector("title", weight="A", config=CONFIG)
    + SearchVector("brand", weight="B", config=CONFIG)
    + SearchVector("description", weight="C", config=CONFIG)
)


def text_index() -> GinIndex:
    return GinIndex(DOCUMENT, name=INDEX_NAME)


def install(schema_editor: BaseDatabaseSchemaEditor, product_model: type[Model]) -> None:
    schema_editor.add_index(product_model, text_index())


def uninstall(schema_editor: BaseDatabaseSchemaEditor, product_model: type[Model]) -> None:
    schema_editor.remove_index(product_model, text_index())


def search_query(text: str) -> SearchQuery | None:
    """Any of the user's words (each stemmed, stop words dropped), as plain text."""
    chunks = [chunk for chunk in text.split() if WORD.search(chunk)][:MAX_TERMS]
    if not chunks:
        return None
    terms = [SearchQuery(chunk, search_type="plain", config=CONFIG) for chunk in chunks]
    return functools.reduce(operator.or_, terms)


def ranked_ids(text: str, matching: QuerySet, limit: int) -> list[int]:
    """Ids of the products in `matching` whose text has any of the words, best ts_rank
    first (ties by id), at most `limit`."""
    query = search_query(text)
    if query is None:
        return []
    found = (
        matching.annotate(document=DOCUMENT, rank=SearchRank(DOCUMENT, query))
        .filter(document=query)
        .order_by("-rank", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    return list(found)
