"""The web's views called in this process, through Django's WSGI handler as gunicorn calls
it, so a bench can read their CPU time without an HTTP hop."""

from __future__ import annotations

import io
import os
import sys
import time

import numpy as np

from workers.index.types import SearchFilter


class ViewCaller:
    """GET requests through Django's WSGI handler in this process, as gunicorn calls it."""

    def __init__(self, env: dict[str, str]) -> None:
        os.environ.update(env)
        import django

        django.setup()
        from django.core.handlers.wsgi import WSGIHandler

        self.handler = WSGIHandler()

    def get(self, path: str) -> tuple[int, bytes]:
        route, _, query = path.partition("?")
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": route,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1",
            "REMOTE_ADDR": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.input": io.BytesIO(),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }
        status: list[str] = []
        response = self.handler(environ, lambda s, headers, exc_info=None: status.append(s))
        body = b"".join(response)
        response.close()
        return int(status[0].split()[0]), body


def view_cpu(view: ViewCaller, ids: np.ndarray, vectors: np.ndarray, k: int, n: int):
    """Per request: (view CPU ms, RPC-alone CPU ms, view wall ms, RPC-alone wall ms)."""
    from catalog.search import search_client

    client = search_client()
    out = np.empty((n, 4))
    for i in range(n):
        j = i % len(ids)
        c0, w0 = time.process_time(), time.perf_counter()
        status, body = view.get(f"/api/products/{int(ids[j])}/similar/?k={k}")
        c1, w1 = time.process_time(), time.perf_counter()
        if status != 200:
            raise RuntimeError(f"the view answered {status}: {body[:300]!r}")
        client.search(vectors[j][None], k + 1, SearchFilter())
        c2, w2 = time.process_time(), time.perf_counter()
        out[i] = (c1 - c0, c2 - c1, w1 - w0, w2 - w1)
    return out * 1e3
