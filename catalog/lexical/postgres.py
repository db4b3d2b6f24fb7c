"""The lexical index on PostgreSQL: full-text search over the products' text, GIN-indexed.

The products' weighted `tsvector` is a stored generated column, `search_document`, which
PostgreSQL keeps in step with every write and a GIN index serves (migration 0009: SKU and
title weigh most, then brand, then description). Matching, ranking and counting the
words read it as stored: over an expression index, each of them parsed the text of every
hit again (`bench/text_search_bench.py --postgres`). The column is not a model field
(SQLite has no `tsvector`); `DOCUMENT` names it in queries on the product table. User
words become `plainto_tsquery` terms joined by OR: never `to_tsquery` on user input,
whose syntax errors would be 500s.
"""

from __future__ import annotations

import functools
import operator

from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVectorField
from django.db.models import Case, QuerySet, Value, When
from django.db.models.expressions import RawSQL

from catalog.lexical.words import NOTHING, LexicalRanking, query_words

CONFIG = "english"  # the stored document's too (migrations 0007 and 0009)
COLUMN = "search_document"
INDEX_NAME = "catalog_product_document_gin"
DOCUMENT = RawSQL('"catalog_product"."search_document"', [], output_field=SearchVectorField())


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
