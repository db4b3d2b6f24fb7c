"""The pgvector view a Django shop would add to an app like this one: the query of
bench/pgvector_sql.py behind the project's whole stack (every middleware, DRF's
authentication, permissions and the search rate limit with its Redis round trip, the
API's JSON renderer), where bench/pgvector_site.py has one middleware and nothing else.
The pgvector bench serves it with gunicorn, with bench/pgvector_stack_settings.py, to
show which part of the REST gap is the stack and which the search behind it.
"""

from __future__ import annotations

import time

from django.db import connections
from django.urls import include, path
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from bench import pgvector_sql
from catalog.api.json_get import JsonGetView
from catalog.api.throttles import RedisWindowThrottle


class PgvectorSimilarView(JsonGetView):
    permission_classes = [AllowAny]
    throttle_classes = [RedisWindowThrottle]
    throttle_scope = "search"

    def get(self, request: Request, pk: int) -> Response:
        started = time.perf_counter()
        try:
            k = int(request.query_params.get("k", "10"))
        except ValueError:
            raise ValidationError({"k": ["must be an integer"]}) from None
        if not 1 <= k <= 100:
            raise ValidationError({"k": ["must be 1..100"]})
        with connections["pgvector"].cursor() as cursor:
            results = pgvector_sql.similar(cursor, pk, k)
        took = (time.perf_counter() - started) * 1e3
        return Response({"results": results, "took_ms": round(took, 2)})


urlpatterns = [
    path(
        "api/pgvector/products/<int:pk>/similar/",
        PgvectorSimilarView.as_view(),
        name="pgvector-similar",
    ),
    path("", include("searchsite.urls")),
]
