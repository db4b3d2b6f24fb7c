"""OpenAPI schema: each operation lists the error statuses its view can answer, all in the
one error shape, `ordering` lists its values, and marked request bodies are closed.

The error statuses follow from what DRF and catalog/api/errors.py do for a view, so a
new view is documented by the same rules (the search views' own 400/503 included):
bad credentials are a 401 wherever authentication runs; writes can be refused (403) or
turned down by a service (400); input can be invalid (400), a body too large (413) or
of a media type the view does not parse (415); an object looked up, or a page past the
end, can be missing (404); throttled views answer 429, and 503 when Redis (rate limits,
cache, queues) is away.
An operation marked with `extend_schema(extensions={CLOSED_BODY: True})` refuses body
fields it does not list (catalog/api/params.py): its body schemas get
`additionalProperties: false`, and the marker is removed.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiFilterExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import build_array_type, build_basic_type, build_parameter_type
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS, AllowAny

_METHODS = {"get", "post", "put", "patch", "delete"}
CLOSED_BODY = "x-closed-body"
# Query parameters that cannot make a request invalid: a bad page is a 404, a bad page
# size falls back to the default, unknown orderings are dropped (DRF's behaviour).
_LENIENT_QUERY = {"page", "page_size", "ordering"}
_NO_BODY = "No response body"
_RETRY_AFTER = {
    "schema": {"type": "integer", "minimum": 0},
    "description": "seconds until the limit lets this client in again",
}


class ErrorSerializer(serializers.Serializer):
    """The one error shape of catalog/api/errors.py."""

    error = serializers.CharField(help_text="a stable code: invalid, not_found, throttled, ...")
    detail = serializers.CharField(help_text="a sentence for people")
    fields = serializers.DictField(
        required=False, help_text="per field (or parameter), the reasons it was refused"
    )


class ApiSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the error responses each operation can give."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        ref = self.resolve_serializer(ErrorSerializer, "response").ref
        statuses = self.error_statuses(operation)
        responses = operation["responses"]
        for code, description in statuses.items():
            responses.setdefault(code, {"description": description})
        for code, response in responses.items():
            if code >= "400" and "content" not in response:  # a view's own, or one of ours
                if response.get("description", _NO_BODY) == _NO_BODY:
                    response["description"] = statuses.get(code, "an error")
                response["content"] = {"application/json": {"schema": ref}}
        if "429" in responses:
            responses["429"].setdefault("headers", {})["Retry-After"] = _RETRY_AFTER
        return operation

    def error_statuses(self, operation: dict[str, Any]) -> dict[str, str]:
        """The error statuses this operation's view can answer, each with why."""
        write = self.method not in SAFE_METHODS
        query = {p["name"] for p in operation.get("parameters", ()) if p["in"] == "query"}
        looks_up = any(p["in"] == "path" for p in operation.get("parameters", ()))
        authenticators = self.view.get_authenticators()
        open_to_all = all(isinstance(p, AllowAny) for p in self.view.get_permissions())
        session = any(isinstance(a, SessionAuthentication) for a in authenticators)
        statuses: dict[str, str] = {}
        if write or query - _LENIENT_QUERY:
            statuses["400"] = "invalid parameters or body, or a request the service refuses"
        if authenticators:
            statuses["401"] = (
                "no credentials, or invalid ones"
                if write and not open_to_all
                else "the credentials sent are invalid (none are needed)"
            )
        if write and (not open_to_all or session):
            statuses["403"] = (
                "not staff, or a session without its CSRF token"
                if not open_to_all
                else "a session without its CSRF token"
            )
        if looks_up:
            statuses["404"] = "no such object, or not one you may see"
        elif self._get_paginator() and self._is_list_view():
            statuses["404"] = "a page past the end"  # DRF's paginator answers it
        if "requestBody" in operation:
            statuses["413"] = "a body over the size limit (DATA_UPLOAD_MAX_MEMORY_SIZE)"
            statuses["415"] = "a body of a media type this operation does not take"
        if self.view.get_throttles():
            statuses["429"] = "rate limited: wait the Retry-After seconds"
            statuses["503"] = "Redis (rate limits, cache, queues) is unreachable"
        return statuses


class OrderingValues(OpenApiFilterExtension):
    """DRF's OrderingFilter with its values listed: each field, `-` first for descending,
    several comma-separated (values it does not know are dropped, as DRF does)."""

    target_class = "rest_framework.filters.OrderingFilter"

    def get_schema_operation_parameters(self, auto_schema: AutoSchema, *args, **kwargs) -> list:
        view = auto_schema.view
        queryset = view.get_queryset()
        fields = self.target.get_valid_fields(queryset, view, {"request": None})
        values = [value for name, _ in fields for value in (name, f"-{name}")]
        default = (  # the view's, else the queryset's, else the model's
            getattr(view, "ordering", None)
            or queryset.query.order_by
            or queryset.model._meta.ordering
        )
        return [
            build_parameter_type(
                name=self.target.ordering_param,
                schema=build_array_type({**build_basic_type(OpenApiTypes.STR), "enum": values}),
                location=OpenApiParameter.QUERY,
                description="sort by these fields, `-` first for descending"
                + (f" (default: {','.join(default)})" if default else ""),
                explode=False,
            )
        ]


def close_marked_bodies(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry: `additionalProperties: false` on the
    request bodies of operations marked CLOSED_BODY (each body's component, or inline)."""
    schemas = result.get("components", {}).get("schemas", {})
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in _METHODS or not operation.pop(CLOSED_BODY, False):
                continue
            for media in operation.get("requestBody", {}).get("content", {}).values():
                schema = media.get("schema", {})
                ref = schema.get("$ref", "")
                target = schemas[ref.rsplit("/", 1)[-1]] if ref else schema
                target["additionalProperties"] = False
    return result
