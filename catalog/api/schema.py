"""OpenAPI post-processing: document the one error shape on every operation.

Every view can answer with the error model of catalog/api/errors.py (validation,
authentication, permission, not found, throttling, Redis or workers away); the
schema says so, so clients and schema-driven tests know every status they may see.
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
