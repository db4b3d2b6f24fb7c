"""GETs answered in JSON without DRF's content negotiation, response finalising and
template rendering.

Nearly every search GET asks for JSON (no Accept header, `*/*` or `application/json`).
For those `JsonGetView` authenticates, checks permissions and throttles exactly as DRF's
dispatch does, calls `get`, and writes its Response's data with the API's JSON renderer and
the headers DRF would add (Allow; Vary: Accept, since another Accept gets the browsable
API). An exception raised on the way goes through DRF's `handle_exception`, so errors keep
their JSON shape and their 401 / 429 headers. Every other request (a browser asking for
HTML, `?format=`, an Accept with parameters, HEAD, POST, OPTIONS) takes DRF's own dispatch.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from catalog.api.renderers import FastJSONRenderer

_JSON_ACCEPTS = frozenset({"", "*/*", "application/json", "application/*"})
_JSON = FastJSONRenderer()


def wants_plain_json(request: HttpRequest) -> bool:
    """A GET that DRF's content negotiation would answer with the JSON renderer as is."""
    return (
        request.method == "GET"
        and request.META.get("HTTP_ACCEPT", "").strip() in _JSON_ACCEPTS
        and api_settings.URL_FORMAT_OVERRIDE not in request.GET
    )


class JsonGetView(APIView):
    """An APIView whose `get` returns a DRF Response: on the lean path its data and status
    are written, nothing else of it (headers a `get` set would be lost there)."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not wants_plain_json(request):
            return super().dispatch(request, *args, **kwargs)
        self.args, self.kwargs = args, kwargs
        self.format_kwarg = None
        drf_request = self.request = self.initialize_request(request, *args, **kwargs)
        self.headers = self.default_response_headers
        try:
            self.perform_authentication(drf_request)
            self.check_permissions(drf_request)
            self.check_throttles(drf_request)
            answer = self.get(drf_request, *args, **kwargs)
        except Exception as exc:
            self.response = self.finalize_response(
                drf_request, self.handle_exception(exc), *args, **kwargs
            )
            return self.response
        return self._json(answer)

    def _json(self, answer: Response) -> HttpResponse:
        response = HttpResponse(
            _JSON.render(answer.data), status=answer.status_code, content_type=_JSON.media_type
        )
        for name, value in self.headers.items():
            response[name] = value
        return response
