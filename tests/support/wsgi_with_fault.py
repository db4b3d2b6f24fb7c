"""searchsite's WSGI application with one planted fault, for tests that run a real web
server: a text search (`/api/search/?q=...`) raises inside the view, so the server
answers a 500 and logs the traceback. The fault is planted by the first request, not by
importing this module: a test that reads FAULT must not break search in its own process."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from searchsite.wsgi import application as site  # sets Django up: catalog's models load after it

FAULT = "planted fault: text search raised"


def _explode(*args: object, **kwargs: object) -> None:
    raise RuntimeError(FAULT)


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    import catalog.search

    catalog.search.text_vector = _explode  # type: ignore[assignment]
    return site(environ, start_response)


__all__ = ["FAULT", "application"]
