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
from django.db import connections
from django.db.models import Case, QuerySet, Value, When
from django.db.models.expressions import RawSQL

from catalog.id_list import id_list

CONFIG = "english"  # the stored document's too (migrations 0007 and 0009)
COLUMN = "search_document"
INDEX_NAME = "catalog_product_document_gin"
DOCUMENT = RawSQL('"catalog_product"."search_document"', [], output_field=SearchVectorField())


def word_query(word: str) -> SearchQuery:
    """One word as plain text (`plainto_tsquery`: stemmed; a stop word matches nothing)."""
    return SearchQuery(word, search_type="plain", config=CONFIG)


def _documents(matching: QuerySet) -> QuerySet:
    """Every product (filters aside), its stored document named `document`."""
    return matching.model.objects.using(matching.db).annotate(document=DOCUMENT)


# Counts a word's hits up to a cap: tens of microseconds in PostgreSQL for a rare word,
# where the same through the ORM cost a millisecond of Python per word.
_HITS_UP_TO = """SELECT count(*) FROM (
        SELECT 1 FROM catalog_product
        WHERE search_document @@ plainto_tsquery(%s::regconfig, %s) LIMIT %s
    ) hits"""


def more_hits_than(word: str, cap: int, matching: QuerySet) -> bool:
    """Whether more than `cap` products (of all, filters aside) have the word."""
    with connections[matching.db].cursor() as cursor:
        cursor.execute(_HITS_UP_TO, [CONFIG, word, cap + 1])
        return cursor.fetchone()[0] > cap


def ranked(
    words: list[str],
    matching: QuerySet,
    limit: int,
    newest: int | None = None,
    every: bool = False,
) -> tuple[list[int], dict[int, int]]:
    """The products in `matching` that have any of the words (`every`: all of them), at
    most `limit`: those with more of the words first, then best ts_rank, then by id; and
    how many of the words each has. `newest`: only that many of the hits, the newest
    (highest ids), are ranked."""
    join = operator.and_ if every else operator.or_
    query = functools.reduce(join, map(word_query, words))
    hits = matching.annotate(document=DOCUMENT).filter(document=query)
    if newest is not None:  # the ids first: in a subquery DOCUMENT would name the outer row
        ids = list(hits.order_by("-pk").values_list("pk", flat=True)[:newest])
        hits = hits.filter(pk__in=id_list(matching.db, ids))
    has_words = [
        Case(When(document=word_query(word), then=Value(1)), default=Value(0)) for word in words
    ]
    found = (
        hits.annotate(rank=SearchRank(DOCUMENT, query), matched=sum(has_words, Value(0)))
        .order_by("-matched", "-rank", "pk")
        .values_list("pk", "matched")[:limit]
    )
    rows = list(found)
    return [pid for pid, _ in rows], dict(rows)


def having(word: str, ids: list[int], matching: QuerySet) -> list[int]:
    """Those of `ids` whose product has the word: read by id, so a common word costs
    what the ids do, not what its hits do."""
    if not ids:
        return []
    found = _documents(matching).filter(pk__in=id_list(matching.db, ids), document=word_query(word))
    return list(found.values_list("pk", flat=True))
