"""Request ids, the access log, API latency metrics and JSON server errors for every
HTTP request.

They go first in MIDDLEWARE, so the id is bound (and the clock runs) around
everything else, including the other middleware.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.encoding import escape_uri_path
from rest_framework.throttling import BaseThrottle

from catalog.api.errors import is_api_path, server_error_body
from workers.observability.context import bound_request_id, is_valid, new_request_id
from workers.observability.metrics import API_REQUEST_SECONDS
from workers.observability.redact import redact_query

HEADER = "X-Request-ID"


class RequestIdMiddleware:
    """Take a valid X-Request-ID from the client (or make one), bind it for the logs and
    the RPC trace id, and return it in the response header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get(HEADER, "")
        request_id = given if is_valid(given) else new_request_id()
        request.request_id = request_id  # type: ignore[attr-defined]
        with bound_request_id(request_id):
            response = self.get_response(request)
        response[HEADER] = request_id
        return response


class ApiServerErrorMiddleware:
    """A 500 under /api/ that Django rendered (an exception outside a DRF view: in another
    middleware or a plain view) becomes the JSON error shape, under DEBUG too, where Django
    answers its HTML debug page with the traceback and settings. Django has already logged
    the exception (`django.request`, with its traceback and the request id).

    First in MIDDLEWARE: Django turns an exception into a response at each middleware, so
    only the outermost one sees the 500s of all the others. (DRF views answer their own
    JSON 500s: catalog.api.errors.exception_handler.)"""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code == 500
            and is_api_path(request)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            request_id = getattr(request, "request_id", "")
            replaced = JsonResponse(server_error_body(request_id), status=500)
            if request_id:
                replaced[HEADER] = request_id
            return replaced
        return response


access_log = logging.getLogger("searchsite.access")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CLIENT = BaseThrottle()  # its get_ident: the rate limits' client address (TRUSTED_PROXIES)


def _escape_controls(text: str) -> str:
    return _CONTROL.sub(lambda match: f"%{ord(match.group()):02X}", text)


class AccessLogMiddleware:
    """One log line a request: client, method, path, query string with the values of
    credential-like parameters redacted (workers/observability/redact.py), status and
    duration; the record carries the request id. It replaces the web server's access
    log, which wrote query strings as they came, tokens included. Goes right after
    RequestIdMiddleware, inside the id's binding."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        duration_ms = (time.perf_counter() - started) * 1000
        query = _escape_controls(redact_query(request.META.get("QUERY_STRING", "")))
        path = escape_uri_path(request.path)
        target = path + (f"?{query}" if query else "")
        client = _CLIENT.get_ident(request) or "-"
        method = _escape_controls(request.method or "-")
        access_log.info(
            "%s %s %s %d %.1fms",
            client,
            method,
            target,
            response.status_code,
            duration_ms,
            extra={  # fields of the JSON line (LOG_FORMAT=json)
                "request_id": getattr(request, "request_id", None),
                "client": client,
                "method": method,
                "path": path,
                "query": query,
                "status": response.status_code,
                "duration_ms": round(duration_ms, 1),
            },
        )
        return response


def _view_label(request: HttpRequest) -> str:
    """A low-cardinality label: the URL name (or route pattern), never the raw path."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "<unmatched>"
    return match.view_name or match.route or "<unnamed>"


class MetricsMiddleware:
    """Observe each request's latency by view, method and status code."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        method = request.method if request.method in _METHODS else "other"
        API_REQUEST_SECONDS.labels(_view_label(request), method, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
