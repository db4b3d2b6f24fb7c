"""One JSON error shape for every failure: {"error": code, "detail": message, "fields": {...}}."""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from catalog.errors import ServiceError, ServiceUnavailable
from workers.observability.context import current_request_id

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"


def _field_errors(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return {str(k): v for k, v in detail.items()}
    return {"non_field_errors": detail if isinstance(detail, list) else [detail]}


def _refused_body(exc: SuspiciousOperation) -> Response:
    """Django's body limits, hit while a view parses the request: the client's input, so a
    4xx that names the limit (Django raises them inside DRF's parsing, where nothing else
    would turn them into a response but a 500)."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = {"error": "too_large", "detail": f"The request body is over {limit} bytes."}
        return Response(body, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        body = {"error": "too_many_fields", "detail": f"The request has over {limit} fields."}
    elif isinstance(exc, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        body = {"error": "too_many_files", "detail": f"The request has over {limit} files."}
    else:  # its message may name a path or a host: not repeated
        body = {"error": "bad_request", "detail": "The request was refused as malformed."}
    return Response(body, status=status.HTTP_400_BAD_REQUEST)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, SuspiciousOperation):
        return _refused_body(exc)
    if isinstance(exc, redis.RedisError):
        # Redis (cache, throttle counters, broker, RPC) is away: a 503 that says so, not a 500.
        exc = ServiceUnavailable(f"Redis is unreachable: {exc}")
    if isinstance(exc, DataError):
        # The database refused a value the validation let through (a NUL byte, a number out
        # of its column's range): the client's input, so a 400, never a 500.
        exc = ServiceError(f"the database refused a value: {str(exc).splitlines()[0]}")
    if isinstance(exc, ServiceError):
        body = {"error": exc.code, "detail": exc.message}
        if exc.details:
            body["fields"] = exc.details
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        fields = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        exc = exceptions.ValidationError(fields)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return _unexpected(exc, context)
    if isinstance(exc, exceptions.ValidationError):
        response.data = {
            "error": "invalid",
            "detail": "The request has invalid fields.",
            "fields": _field_errors(exc.detail),
        }
        response.status_code = status.HTTP_400_BAD_REQUEST
    elif isinstance(exc, exceptions.APIException):
        response.data = {"error": exc.default_code, "detail": str(exc.detail)}
    return response


def server_error_body(request_id: str = "") -> dict[str, str]:
    """The 500 body: the request id to quote, nothing of the exception (no internals)."""
    request_id = request_id or current_request_id() or "-"
    return {
        "error": "server_error",
        "detail": f"A server error occurred; quote request id {request_id} when reporting it.",
    }


def _unexpected(exc: Exception, context: dict) -> Response:
    """A bug or an unhandled failure in a view: logged with its traceback, answered as a
    JSON 500 in every mode (DRF would re-raise it, and under DEBUG Django would answer
    its HTML debug page)."""
    request = context.get("request")
    logger.error(
        "unhandled %s in %s %s",
        type(exc).__name__,
        getattr(request, "method", "?"),
        getattr(request, "path", "?"),
        exc_info=exc,
    )
    set_rollback()  # like DRF's handler: undo an ATOMIC_REQUESTS transaction
    return Response(server_error_body(), status=status.HTTP_500_INTERNAL_SERVER_ERROR)


def is_api_path(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


@csrf_exempt
def api_not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    """Unmatched /api/ URLs answer the JSON error shape, not Django's HTML page."""
    return JsonResponse({"error": "not_found", "detail": "Not found."}, status=404)
