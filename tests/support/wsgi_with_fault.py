"""searchsite's WSGI application with one planted fault, for tests that run a real web
server: a text search (`/api/search/?q=...`) raises inside the view, so the server
answers a 500 and logs the traceback."""

from __future__ import annotations

from searchsite.wsgi import application  # sets Django up: catalog's models load after it

FAULT = "planted fault: text search raised"


def _explode(*args: object, **kwargs: object) -> None:
    raise RuntimeError(FAULT)


def _plant() -> None:
    import catalog.search

    catalog.search.text_vector = _explode  # type: ignore[assignment]


_plant()

__all__ = ["FAULT", "application"]
