"""`GET /ready` beside the metrics: a Kubernetes readiness probe for a search worker.

200 when every shard replica in the process has a state the log continues (or the
worker serves no shard); otherwise 503 and, per shard, why not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class HasStatus(Protocol):
    def status(self) -> tuple[bool, str]: ...


def readiness(services: Mapping[int, HasStatus]) -> tuple[bool, dict[str, dict[str, object]]]:
    report = {}
    for shard, service in sorted(dict(services).items()):
        ready, reason = service.status()
        report[str(shard)] = {"ready": ready, "reason": reason}
    return all(entry["ready"] for entry in report.values()), report


def with_readiness(app: Wsgi, services: Mapping[int, HasStatus]) -> Wsgi:
    """`app` for every path but /ready and /live (200 while the process answers)."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in ("/ready", "/live"):
            return app(environ, start_response)
        ok, report = readiness(services) if path == "/ready" else (True, {})
        body = json.dumps({"ready": ok, "shards": report}).encode()
        status = "200 OK" if ok else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json")])
        return [body]

    return wrapped
