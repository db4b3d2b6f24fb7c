"""Lexical ranking of products by their words: SKU, brand, title and description.

One backend per database: PostgreSQL full-text search (`postgres`) or SQLite FTS5
(`sqlite_fts5`); `ranked` picks the one of the connection the queryset uses.

Neither ranks a top-k without scoring every hit, so a word that most products have cost
O(its hits) per search (`bench/text_search_bench.py`: a word of every title). A word with
more than SEARCH_COMMON_WORD_HITS hits is therefore common: the candidates come from the
query's other words, and a common word is only counted on those candidates, which still
puts the products that have it first. A query of common words alone ranks the newest
that many of the hits that have every word and pass the filters, then, short of the
limit, the newest that many that have any.
"""

from __future__ import annotations

from types import ModuleType

from django.conf import settings
from django.db import connections
from django.db.models import QuerySet

from catalog.lexical import postgres, sqlite_fts5
from catalog.lexical.words import NOTHING, LexicalRanking, query_words


def _backend(using: str) -> ModuleType:
    vendor = connections[using].vendor
    if vendor == "postgresql":
        return postgres
    if vendor == "sqlite":
        return sqlite_fts5
    raise NotImplementedError(f"no lexical index for the {vendor} database")


def ranked(text: str, matching: QuerySet, limit: int) -> LexicalRanking:
    """Products in `matching` that share a word with `text`, at most `limit`: those with
    more of the words first, then by the backend's relevance, then by id."""
    words = query_words(text)
    if not words:
        return NOTHING
    backend = _backend(matching.db)
    cap = settings.SEARCH_COMMON_WORD_HITS
    common = [word for word in words if backend.more_hits_than(word, cap, matching)]
    rare = [word for word in words if word not in common]
    if not rare:  # the newest hits with every word, then (short of the limit) with any
        ids, matched = backend.ranked(words, matching, limit, newest=cap, every=True)
        if len(words) > 1 and len(ids) < limit:
            any_ids, any_matched = backend.ranked(words, matching, limit, newest=cap)
            ids += [pid for pid in any_ids if pid not in matched]
            matched = {**any_matched, **matched}
    else:
        ids, matched = backend.ranked(rare, matching, limit)
        for word in common:
            for pid in backend.having(word, ids, matching):
                matched[pid] += 1
    return LexicalRanking.ordered(ids, matched, len(words)).first(limit)


def reinstall_after_migrate(using: str = "default", **_: object) -> None:
    """post_migrate: SQLite loses the FTS5 triggers when a migration rebuilds the product
    table; put them back (and refill the index) after every `migrate`."""
    connection = connections[using]
    if connection.vendor == "sqlite":
        sqlite_fts5.install(connection)
