"""Lexical ranking of products by their words: SKU, brand, title and description.

One backend per database: PostgreSQL full-text search (`postgres`) or SQLite FTS5
(`sqlite_fts5`); `ranked` picks the one of the connection the queryset uses.
"""

from __future__ import annotations

from django.db import connections
from django.db.models import QuerySet

from catalog.lexical import postgres, sqlite_fts5
from catalog.lexical.words import LexicalRanking


def ranked(text: str, matching: QuerySet, limit: int) -> LexicalRanking:
    """Products in `matching` that share a word with `text`: more of the words first."""
    vendor = connections[matching.db].vendor
    if vendor == "postgresql":
        return postgres.ranked(text, matching, limit)
    if vendor == "sqlite":
        return sqlite_fts5.ranked(text, matching, limit)
    raise NotImplementedError(f"no lexical index for the {vendor} database")


def reinstall_after_migrate(using: str = "default", **_: object) -> None:
    """post_migrate: SQLite loses the FTS5 triggers when a migration rebuilds the product
    table; put them back (and refill the index) after every `migrate`."""
    connection = connections[using]
    if connection.vendor == "sqlite":
        sqlite_fts5.install(connection)
