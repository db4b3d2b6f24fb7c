"""The lexical index on SQLite: an FTS5 table over the products' text, kept by triggers.

The table reads its text from `catalog_product` (external content) and triggers keep it
in step with every write, `QuerySet.update()` and raw SQL included. `install()` is
idempotent: the migration runs it, and so does every `migrate` (post_migrate), because
SQLite rebuilds a table to alter it and a rebuilt `catalog_product` loses its triggers.
"""

from __future__ import annotations

import json

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

TABLE = "catalog_product_fts"

_CREATE = """
CREATE VIRTUAL TABLE IF NOT EXISTS catalog_product_fts USING fts5(
    sku, brand, title, description,
    content='catalog_product', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
)"""
_INSERT = """INSERT INTO catalog_product_fts(rowid, sku, brand, title, description)
    VALUES (new.id, new.sku, new.brand, new.title, new.description);"""
_DELETE = """INSERT INTO catalog_product_fts(catalog_product_fts, rowid, sku, brand, title,
    description) VALUES ('delete', old.id, old.sku, old.brand, old.title, old.description);"""
TRIGGERS = {
    "catalog_product_fts_ai": "AFTER INSERT ON catalog_product BEGIN " + _INSERT + " END",
    "catalog_product_fts_ad": "AFTER DELETE ON catalog_product BEGIN " + _DELETE + " END",
    "catalog_product_fts_au": "AFTER UPDATE OF sku, brand, title, description "
    "ON catalog_product BEGIN " + _DELETE + " " + _INSERT + " END",
}
_PRESENT = """SELECT name FROM sqlite_master WHERE name IN
    ('catalog_product_fts', 'catalog_product_fts_ai', 'catalog_product_fts_ad',
     'catalog_product_fts_au')"""
# The ids are checked against the word's hits as they stream by, between the lowest and
# the highest id (the table seeks to them: the newest hits of common words are a short
# stretch). `+rowid` keeps the id list from the full-text table, which, driven by it, ran
# the match once per id (6x slower for 1,000 ids); a MATERIALIZED list of the hits cost
# 3x more for a common word.
_HAS_WORD = """SELECT rowid FROM catalog_product_fts
    WHERE catalog_product_fts MATCH %s AND rowid BETWEEN %s AND %s
    AND +rowid IN (SELECT value FROM json_each(%s))"""
# bm25 weight of each column (sku, brand, title, description): a word in the SKU or the
# title says more than one in the brand, which says more than the description.
_BM25 = "bm25(catalog_product_fts, 10.0, 4.0, 5.0, 1.0)"
# The filters are checked hit by hit (`matching` correlated with the hit): with `id IN
# (matching)` SQLite listed every product that passes them first, the whole catalog for
# most searches, however few products have the words (bench/text_search_bench.py).
_RANKED = """WITH hits AS MATERIALIZED (
        SELECT rowid AS id, {bm25} AS score
        FROM catalog_product_fts WHERE catalog_product_fts MATCH %s
    ) SELECT id FROM hits WHERE EXISTS ({matching}) ORDER BY score, id LIMIT %s"""
# Common words alone: the hits are read newest first and the reading stops at `newest`
# that pass the filters, so BM25 scores that many at most.
_NEWEST = """WITH hits AS MATERIALIZED (
        SELECT rowid AS id, {bm25} AS score FROM catalog_product_fts
        WHERE catalog_product_fts MATCH %s AND EXISTS ({matching})
        ORDER BY rowid DESC LIMIT %s
    ) SELECT id FROM hits ORDER BY score, id LIMIT %s"""
# Reading a word's hits without scoring them is cheap (0.44 ms for the first 5,001 of a
# word of every title at 50k products): this stops one past the cap.
_HITS_UP_TO = """SELECT count(*) FROM (
        SELECT 1 FROM catalog_product_fts WHERE catalog_product_fts MATCH %s LIMIT %s
    )"""
_THIS_HIT = RawSQL("hits.id", ())
_THIS_ROW = RawSQL("catalog_product_fts.rowid", ())


def install(connection: BaseDatabaseWrapper) -> bool:
    """Create the table and triggers where missing, and fill the table when anything was
    missing (it may have missed writes). True when it had to."""
    with connection.cursor() as cursor:
        cursor.execute(_PRESENT)
        present = {row[0] for row in cursor.fetchall()}
        if present >= {TABLE, *TRIGGERS}:
            return False
        cursor.execute(_CREATE)
        for name, body in TRIGGERS.items():
            cursor.execute("CREATE TRIGGER IF NOT EXISTS " + name + " " + body)
        cursor.execute("INSERT INTO catalog_product_fts(catalog_product_fts) VALUES ('rebuild')")
    return True


def uninstall(connection: BaseDatabaseWrapper) -> None:
    with connection.cursor() as cursor:
        for name in TRIGGERS:
            cursor.execute("DROP TRIGGER IF EXISTS " + name)
        cursor.execute("DROP TABLE IF EXISTS catalog_product_fts")


def phrase(word: str) -> str:
    """A word as an FTS5 phrase: quotes, `*`, `-`, `NEAR`, `AND`/`OR`/`NOT`, `^` and column
    filters inside it are plain text for the tokenizer."""
    return '"' + word.replace('"', '""') + '"'


def more_hits_than(word: str, cap: int, matching: QuerySet) -> bool:
    """Whether more than `cap` products (of all, filters aside) have the word."""
    with connections[matching.db].cursor() as cursor:
        cursor.execute(_HITS_UP_TO, [phrase(word), cap + 1])
        return cursor.fetchone()[0] > cap


def ranked(
    words: list[str],
    matching: QuerySet,
    limit: int,
    newest: int | None = None,
    every: bool = False,
) -> tuple[list[int], dict[int, int]]:
    """The products in `matching` that have any of the words (`every`: all of them), at
    most `limit`, best BM25 first (ties by id), and how many of the words each has.
    `newest`: only that many of the hits, the newest (highest ids), are ranked."""
    # Django's own SQL of the queryset, parameterised, narrowed to one hit
    hit = _THIS_HIT if newest is None else _THIS_ROW
    inner, params = matching.filter(pk=hit).order_by().values("pk").query.sql_with_params()
    match = (" AND " if every else " OR ").join(phrase(w) for w in words)
    with connections[matching.db].cursor() as cursor:
        if newest is None:
            sql = _RANKED.format(bm25=_BM25, matching=inner)
            cursor.execute(sql, [match, *params, limit])
        else:
            sql = _NEWEST.format(bm25=_BM25, matching=inner)
            cursor.execute(sql, [match, *params, newest, limit])
        ids = [row[0] for row in cursor.fetchall()]
    if len(words) == 1 or every:
        return ids, dict.fromkeys(ids, len(words))
    matched = dict.fromkeys(ids, 0)
    for word in words:
        for pid in having(word, ids, matching):
            matched[pid] += 1
    return ids, matched


def having(word: str, ids: list[int], matching: QuerySet) -> list[int]:
    """Those of `ids` whose product has the word."""
    if not ids:
        return []
    with connections[matching.db].cursor() as cursor:
        cursor.execute(_HAS_WORD, [phrase(word), min(ids), max(ids), json.dumps(ids)])
        return [pid for (pid,) in cursor.fetchall()]
