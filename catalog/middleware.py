"""Request ids, the access log, request and database metrics and JSON server errors for
every HTTP request.

They go first in MIDDLEWARE, so the id is bound (and the clock runs) around
everything else, including the other middleware.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.utils.encoding import escape_uri_path
from prometheus_client import Histogram
from rest_framework.throttling import BaseThrottle

from catalog.api.errors import is_api_path, server_error_body
from workers.observability.context import bound_request_id, is_valid, new_request_id
from workers.observability.metrics import (
    API_REQUEST_SECONDS,
    DB_QUERIES,
    DB_SECONDS,
    WEB_REQUEST_SECONDS,
)
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
        if not access_log.isEnabledFor(logging.INFO):  # LOG_LEVEL=WARNING: nothing to build
            return response
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


API_UNMATCHED = "<unmatched>"


def _area(path: str) -> str:
    """Where a request outside the API went: admin, static, media, metrics or site."""
    for area, prefix in (
        ("admin", "/admin/"),
        ("static", "/" + settings.STATIC_URL.lstrip("/")),
        ("media", "/" + settings.MEDIA_URL.lstrip("/")),
        ("metrics", "/metrics"),
    ):
        if path.startswith(prefix):
            return area
    return "site"


def _api_route(request: HttpRequest) -> str:
    """The DRF route name (`product-list`, `search`, ...); never the raw path. A CORS
    preflight is answered before URL resolution: its path is resolved here."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        try:
            match = resolve(request.path_info, getattr(request, "urlconf", None))
        except Resolver404:
            return API_UNMATCHED
    return match.url_name or API_UNMATCHED  # the unnamed catch-all: JSON 404s


def _view_label(request: HttpRequest) -> str:
    """A low-cardinality label: the API route name under /api/, else the area."""
    return _api_route(request) if is_api_path(request) else _area(request.path_info)


class QueryTally:
    """A connection.execute_wrapper counting the queries (and their time) of one request."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.count += 1
            self.seconds += time.perf_counter() - started

    @contextmanager
    def counting(self) -> Iterator[QueryTally]:
        """Wrap every database connection of this thread for the block (what
        `connection.execute_wrapper` does, for all of them at once)."""
        wrapped = [connections[alias].execute_wrappers for alias in connections]
        for wrappers in wrapped:
            wrappers.append(self)
        try:
            yield self
        finally:
            for wrappers in wrapped:
                wrappers.pop()


@functools.cache
def _child(metric: Histogram, *labels: str) -> Histogram:
    """`metric.labels(*labels)`, looked up once: the labels are few (route names, methods,
    status codes), and `labels()` validates and locks on every call."""
    return metric.labels(*labels)


class MetricsMiddleware:
    """Observe each request's latency (API requests by route name, the rest by area),
    method and status code, and its database queries (count and time)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        with QueryTally().counting() as queries:
            response = self.get_response(request)
        elapsed = time.perf_counter() - started
        method = request.method if request.method in _METHODS else "other"
        status = str(response.status_code)
        view = _view_label(request)
        metric = API_REQUEST_SECONDS if is_api_path(request) else WEB_REQUEST_SECONDS
        _child(metric, view, method, status).observe(elapsed)
        _child(DB_QUERIES, view).observe(queries.count)
        _child(DB_SECONDS, view).observe(queries.seconds)
        return response


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
