"""The lexical index on SQLite: an FTS5 table over the products' text, kept by triggers.

The table reads its text from `catalog_product` (external content) and triggers keep it
in step with every write, `QuerySet.update()` and raw SQL included. `install()` is
idempotent: the migration runs it, and so does every `migrate` (post_migrate), because
SQLite rebuilds a table to alter it and a rebuilt `catalog_product` loses its triggers.
"""

from __future__ import annotations

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

from catalog.lexical.words import NOTHING, LexicalRanking, query_words

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
# The full-text match runs first, on its own (MATERIALIZED): left to itself SQLite drives
# the query from the `IN` list and runs the match once per product, 40x slower.
_HAS_WORD = """WITH hits AS MATERIALIZED (
        SELECT rowid AS id FROM catalog_product_fts WHERE catalog_product_fts MATCH %s
    ) SELECT id FROM hits WHERE id IN ({ids})"""
# bm25 weight of each column (sku, brand, title, description): a word in the SKU or the
# title says more than one in the brand, which says more than the description. The
# filters are checked hit by hit (`matching` correlated with `hits.id`): with `id IN
# (matching)` SQLite listed every product that passes them first, the whole catalog for
# most searches, however few products have the words (bench/text_search_bench.py).
_RANKED = """WITH hits AS MATERIALIZED (
        SELECT rowid AS id, bm25(catalog_product_fts, 10.0, 4.0, 5.0, 1.0) AS score
        FROM catalog_product_fts WHERE catalog_product_fts MATCH %s
    ) SELECT id FROM hits WHERE EXISTS ({matching}) ORDER BY score, id LIMIT %s"""
_THIS_HIT = RawSQL("hits.id", ())


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


def ranked(text: str, matching: QuerySet, limit: int) -> LexicalRanking:
    """The products in `matching` that have any of the words, at most `limit`: best BM25
    first (ties by id), then those with more of the words moved ahead."""
    words = query_words(text)
    if not words:
        return NOTHING
    # Django's own SQL of the queryset, parameterised, narrowed to one hit
    inner, params = matching.filter(pk=_THIS_HIT).order_by().values("pk").query.sql_with_params()
    sql = _RANKED.format(matching=inner)
    with connections[matching.db].cursor() as cursor:
        cursor.execute(sql, [" OR ".join(phrase(w) for w in words), *params, limit])
        ids = [row[0] for row in cursor.fetchall()]
        matched: dict[int, int] = dict.fromkeys(ids, 0)
        if len(words) > 1 and ids:
            has_word = _HAS_WORD.format(ids=", ".join(["%s"] * len(ids)))
            for word in words:
                cursor.execute(has_word, [phrase(word), *ids])
                for (pid,) in cursor.fetchall():
                    matched[pid] += 1
        else:
            matched = dict.fromkeys(ids, 1)
    return LexicalRanking.ordered(ids, matched, len(words))
