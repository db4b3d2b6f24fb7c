"""OpenAPI post-processing: document the one error shape on every operation, and the
request bodies that refuse unknown fields.

Every view can answer with the error model of catalog/api/errors.py (validation,
authentication, permission, not found, throttling, Redis or workers away); the
schema says so, so clients and schema-driven tests know every status they may see.
An operation marked with `extend_schema(extensions={CLOSED_BODY: True})` refuses body
fields it does not list (catalog/api/params.py): its body schemas get
`additionalProperties: false`, and the marker is removed.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "detail": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": True},
    },
    "required": ["error", "detail"],
}

ERROR_STATUSES = {
    "400": "invalid parameters or body",
    "401": "authentication required or invalid",
    "403": "not allowed",
    "404": "not found (also: a page past the end)",
    "405": "method not allowed",
    "415": "unsupported media type",
    "429": "rate limited",
    "503": "a dependency (Redis, search or encode workers) is unavailable",
}
_METHODS = {"get", "post", "put", "patch", "delete"}
CLOSED_BODY = "x-closed-body"


def add_error_responses(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry: keep documented responses, add the rest."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for code, description in ERROR_STATUSES.items():
                response = responses.setdefault(code, {"description": description})
                response.setdefault("content", {"application/json": {"schema": ref}})
    return result


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
