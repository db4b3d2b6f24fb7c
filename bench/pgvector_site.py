"""A plain Django view over pgvector, the "more like this" a Django shop would write first:
one SQL query ordering its product table by inner product with the product's own stored
embedding (an HNSW index scan; the scalar subquery is computed once), answered as JSON
cards. The pgvector bench serves it with gunicorn as the service's web is served.

    PGVECTOR_PORT=5433 PGVECTOR_EF_SEARCH=40 gunicorn bench.pgvector_site:application
"""

from __future__ import annotations

import os
import time

import django
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponseBadRequest, JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    INSTALLED_APPS=[],
    SECRET_KEY="bench-" + "x" * 60,
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "postgres",
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": os.environ["PGVECTOR_PORT"],
            "CONN_MAX_AGE": None,  # one connection per gunicorn thread, kept
            "OPTIONS": {"options": f"-c hnsw.ef_search={int(os.environ['PGVECTOR_EF_SEARCH'])}"},
        }
    },
)
django.setup()

SIMILAR = """
    SELECT id, title, price, in_stock, category_id,
           -(embedding <#> (SELECT embedding FROM items WHERE id = %(pk)s)) AS score
    FROM items WHERE id <> %(pk)s
    ORDER BY embedding <#> (SELECT embedding FROM items WHERE id = %(pk)s)
    LIMIT %(k)s
"""


def similar(request: HttpRequest, pk: int) -> JsonResponse | HttpResponseBadRequest:
    started = time.perf_counter()
    try:
        k = int(request.GET.get("k", "10"))
    except ValueError:
        return HttpResponseBadRequest("k must be an integer")
    if not 1 <= k <= 100:
        return HttpResponseBadRequest("k must be 1..100")
    with connection.cursor() as cursor:
        cursor.execute(SIMILAR, {"pk": pk, "k": k})
        rows = cursor.fetchall()
    results = [
        {"id": r[0], "title": r[1], "price": str(r[2]), "in_stock": r[3], "category": r[4],
         "score": float(r[5])}
        for r in rows
    ]  # fmt: skip
    took = (time.perf_counter() - started) * 1e3
    return JsonResponse({"results": results, "took_ms": round(took, 2)})


urlpatterns = [path("products/<int:pk>/similar/", similar)]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
