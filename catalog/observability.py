"""GET /metrics: the Prometheus metrics of every process on this host (multiprocess mode).

Open to anyone when METRICS_ALLOW_ANONYMOUS is on (the local default); otherwise to
staff sessions and to scrapers sending `Authorization: Bearer <METRICS_TOKEN>`.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from workers.observability import metrics as _metrics  # noqa: F401  (every metric defined)
from workers.observability.multiproc import render


def _allowed(request: HttpRequest) -> bool:
    if settings.METRICS_ALLOW_ANONYMOUS:
        return True
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponse("metrics need staff or the metrics token\n", status=403)
    body, content_type = render()
    return HttpResponse(body, content_type=content_type)
