"""The "more like this" query a Django shop would write over pgvector, shared by the two
Django views the pgvector bench serves (bench/pgvector_site.py, bench/pgvector_stack.py):
one SQL query ordering the product table by inner product with the product's own stored
embedding (an HNSW index scan; the scalar subquery is computed once)."""

from __future__ import annotations

import os
from typing import Any

SIMILAR = """
    SELECT id, title, price, in_stock, category_id,
           -(embedding <#> (SELECT embedding FROM items WHERE id = %(pk)s)) AS score
    FROM items WHERE id <> %(pk)s
    ORDER BY embedding <#> (SELECT embedding FROM items WHERE id = %(pk)s)
    LIMIT %(k)s
"""


def similar(cursor: Any, pk: int, k: int) -> list[dict]:
    """The k products most like `pk`, as JSON-ready cards."""
    cursor.execute(SIMILAR, {"pk": pk, "k": k})
    return [
        {"id": r[0], "title": r[1], "price": str(r[2]), "in_stock": r[3], "category": r[4],
         "score": float(r[5])}
        for r in cursor.fetchall()
    ]  # fmt: skip


def database() -> dict[str, Any]:
    """Django's settings for the bench's throwaway cluster (PGVECTOR_PORT), searched with
    hnsw.ef_search PGVECTOR_EF_SEARCH; one connection per gunicorn thread, kept."""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": os.environ["PGVECTOR_PORT"],
        "CONN_MAX_AGE": None,
        "OPTIONS": {"options": f"-c hnsw.ef_search={int(os.environ['PGVECTOR_EF_SEARCH'])}"},
    }
