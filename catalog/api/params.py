"""Refuse parameters an endpoint does not read, naming them, rather than ignore them.

A client that sends `brand=` or `page=` to the search (not supported there) or puts
`k` in the query string of a POST (read from the body only) would otherwise get an
answer that silently disregards what it asked for.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping

from rest_framework.request import Request
from rest_framework.serializers import BaseSerializer, Serializer
from rest_framework.settings import api_settings

from catalog.errors import ServiceError

# Handled by DRF before any view (content negotiation), on every endpoint.
_FRAMEWORK_QUERY = frozenset(filter(None, [api_settings.URL_FORMAT_OVERRIDE]))
# The token an HTML form carries for Django's CSRF check, besides the X-CSRFToken header.
_FRAMEWORK_FORM = frozenset({"csrfmiddlewaretoken"})


class ShallowFields:
    """A Serializer mixin: each instance's fields are shallow copies of the declared ones.

    DRF deep-copies every declared field for every instance (a field rebuilt from its init
    arguments: ~75 us for the five search filters, most of their validation's CPU). A
    plain field keeps nothing per instance beyond what `bind` sets on its copy, and its
    validators are only read, so a shallow copy serves; nested serializers still get the
    deep copy."""

    _declared_fields: dict

    def get_fields(self) -> dict:
        return {
            name: copy.deepcopy(field) if isinstance(field, BaseSerializer) else copy.copy(field)
            for name, field in self._declared_fields.items()
        }


@functools.cache
def field_names(serializer: type[Serializer]) -> frozenset[str]:
    """The fields a serializer class reads, worked out once: ``Serializer().fields`` deep-copies
    every declared field, a cost a request need not pay just to learn their names."""
    return frozenset(serializer().fields)


def check_parameters(
    request: Request, *, query: Iterable[str], body: Iterable[str] | None = None
) -> None:
    """ServiceError (400 `unknown_parameter`) naming every query parameter outside `query`
    or given twice, and every body field outside `body` (when the endpoint reads a body)."""
    allowed_query = frozenset(query)
    allowed_body = None if body is None else frozenset(body)
    fields: dict[str, list[str]] = {}
    for name in request.query_params:
        if name in _FRAMEWORK_QUERY:
            continue
        if name not in allowed_query:
            if allowed_body is not None and name in allowed_body:
                reason = "goes in the request body, not the query string"
            else:
                reason = "not a parameter of this endpoint"
            fields.setdefault(name, []).append(reason)
        elif len(request.query_params.getlist(name)) > 1:
            fields.setdefault(name, []).append("given more than once")
    if allowed_body is not None and isinstance(request.data, Mapping):
        for name in request.data:
            if name not in allowed_body and name not in _FRAMEWORK_FORM:
                fields.setdefault(name, []).append("not a field of this request body")
    if fields:
        named = "; ".join(f"{name}: {', '.join(reasons)}" for name, reasons in fields.items())
        accepted = ", ".join(sorted(allowed_query)) or "none"
        raise ServiceError(
            f"unsupported parameters ({named}); query parameters taken here: {accepted}",
            code="unknown_parameter",
            details=fields,
        )
