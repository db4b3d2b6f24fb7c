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
from django.db.models import Case, Model, QuerySet, Value, When

from catalog.lexical.words import NOTHING, LexicalRanking, query_words

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


def word_query(word: str) -> SearchQuery:
    """One word as plain text (`plainto_tsquery`: stemmed; a stop word matches nothing)."""
    return SearchQuery(word, search_type="plain", config=CONFIG)


def search_query(text: str) -> SearchQuery | None:
    """Any of the user's words, as plain text."""
    words = query_words(text)
    return functools.reduce(operator.or_, map(word_query, words)) if words else None


def ranked(text: str, matching: QuerySet, limit: int) -> LexicalRanking:
    """The products in `matching` that have any of the words, at most `limit`: those with
    more of the words first, then best ts_rank, then by id."""
    words = query_words(text)
    if not words:
        return NOTHING
    query = functools.reduce(operator.or_, map(word_query, words))
    has_words = [
        Case(When(document=word_query(word), then=Value(1)), default=Value(0)) for word in words
    ]
    found = (
        matching.annotate(document=DOCUMENT)
        .filter(document=query)
        .annotate(rank=SearchRank(DOCUMENT, query), matched=sum(has_words, Value(0)))
        .order_by("-matched", "-rank", "pk")
        .values_list("pk", "matched")[:limit]
    )
    rows = list(found)
    return LexicalRanking([pid for pid, _ in rows], dict(rows), len(words))
