"""A plain Django view over pgvector, the "more like this" a Django shop would write first
(bench/pgvector_sql.py), alone in a minimal site: one middleware, no DRF, no rate limit.
The pgvector bench serves it with gunicorn as the service's web is served;
bench/pgvector_stack.py serves the same query inside this project's own stack.

    PGVECTOR_PORT=5433 PGVECTOR_EF_SEARCH=40 gunicorn bench.pgvector_site:application
"""

from __future__ import annotations

import time

import django
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponseBadRequest, JsonResponse
from django.urls import path

from bench import pgvector_sql

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    INSTALLED_APPS=[],
    SECRET_KEY="bench-" + "x" * 60,
    DATABASES={"default": pgvector_sql.database()},
)
django.setup()


def similar(request: HttpRequest, pk: int) -> JsonResponse | HttpResponseBadRequest:
    started = time.perf_counter()
    try:
        k = int(request.GET.get("k", "10"))
    except ValueError:
        return HttpResponseBadRequest("k must be an integer")
    if not 1 <= k <= 100:
        return HttpResponseBadRequest("k must be 1..100")
    with connection.cursor() as cursor:
        results = pgvector_sql.similar(cursor, pk, k)
    took = (time.perf_counter() - started) * 1e3
    return JsonResponse({"results": results, "took_ms": round(took, 2)})


urlpatterns = [path("products/<int:pk>/similar/", similar)]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
