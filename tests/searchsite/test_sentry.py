"""Sentry for real: a fresh interpreter boots the site with SENTRY_DSN pointing at a local
HTTP server that plays Sentry's ingestion endpoint, and the envelopes it receives are read."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CLIENT_ADDR = "203.0.113.9"
COOKIE_SECRET = "cookie-value-never-sent"
TOKEN_SECRET = "tok-value-never-sent"


class Ingest:
    """What the fake Sentry received: raw bodies and the items of every envelope."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.items: list[tuple[dict, bytes]] = []
        self.paths: list[str] = []

    def events(self) -> list[dict]:
        return [json.loads(payload) for header, payload in self.items if header["type"] == "event"]


def _parse_envelope(body: bytes) -> list[tuple[dict, bytes]]:
    """Sentry's envelope: a header line, then per item a header line and its payload."""
    lines = body.split(b"\n")
    items, i = [], 1
    while i < len(lines) and lines[i].strip():
        header = json.loads(lines[i])
        if "length" in header:  # a payload of that many bytes, which may hold newlines
            rest = b"\n".join(lines[i + 1 :])
            payload = rest[: header["length"]]
            lines = [b"", *rest[header["length"] :].split(b"\n")]
            i = 1
        else:
            payload, i = lines[i + 1], i + 2
        items.append((header, payload))
    return items


@pytest.fixture
def sentry_ingest() -> Iterator[tuple[Ingest, str]]:
    """A local stand-in for Sentry's ingestion endpoint, and a DSN naming it."""
    ingest = Ingest()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            elif self.headers.get("Content-Encoding") == "br":
                import brotli

                body = brotli.decompress(body)
            ingest.paths.append(self.path)
            ingest.bodies.append(body)
            ingest.items.extend(_parse_envelope(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ingest, f"http://public@127.0.0.1:{server.server_port}/1"
    server.shutdown()
    server.server_close()


def _run(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")}
    base.update(DATA_DIR=str(tmp_path), DEBUG="true", **env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )


# A failing API view (the products list), served through the WSGI handler
# gunicorn calls, with a client address, a cookie and a token in the query string that
# must stay out of the event.
WEB_FAULT = f"""
    import io
    from wsgiref.util import setup_testing_defaults

    import sentry_sdk

    from searchsite.wsgi import application  # sets Django up, as gunicorn's import does
    from catalog.api.views import ProductViewSet

    def _explode(*args, **kwargs):
        raise RuntimeError("the database fell over")

    ProductViewSet.get_queryset = _explode
    environ = {{
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/products/",
        "QUERY_STRING": "category=shoes&token={TOKEN_SECRET}",
        "REMOTE_ADDR": "{CLIENT_ADDR}",
        "HTTP_COOKIE": "tracking={COOKIE_SECRET}",
        "wsgi.input": io.BytesIO(),
    }}
    setup_testing_defaults(environ)
    statuses = []
    body = b"".join(application(environ, lambda status, headers, *exc: statuses.append(status)))
    print(statuses[0])
    print(body.decode())
    sentry_sdk.flush(timeout=10)
"""


def test_an_api_view_fault_reaches_sentry_without_personal_data(sentry_ingest, redis_url, tmp_path):
    ingest, dsn = sentry_ingest
    result = _run(
        WEB_FAULT, tmp_path, SENTRY_DSN=dsn, SENTRY_ENVIRONMENT="test-env", REDIS_URL=redis_url
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("500"), result.stdout  # the client still gets its JSON 500
    assert "server_error" in result.stdout

    events = ingest.events()
    assert events, f"no event reached the ingestion endpoint: {ingest.paths}"
    assert all(path == "/api/1/envelope/" for path in ingest.paths)
    event = events[0]
    assert [value["type"] for value in event["exception"]["values"]] == ["RuntimeError"]
    assert event["environment"] == "test-env"
    assert event["request"]["url"].endswith("/api/products/")
    # Under the request id the client was given to quote.
    assert event["extra"]["request_id"] in result.stdout
    raw = b"".join(ingest.bodies).decode()
    for secret in (CLIENT_ADDR, COOKIE_SECRET, TOKEN_SECRET):
        assert secret not in raw, f"{secret} was sent to Sentry"
    assert "user" not in event or "ip_address" not in event["user"]


CELERY_FAULT = """
    import django

    django.setup()
    import sentry_sdk

    from searchsite.celery import app

    @app.task(name="tests.sentry.fails")
    def fails():
        raise LookupError("a task fell over")

    fails.apply()
    sentry_sdk.flush(timeout=10)
"""


def test_a_failing_celery_task_reaches_sentry(sentry_ingest, tmp_path):
    ingest, dsn = sentry_ingest
    result = _run(
        CELERY_FAULT, tmp_path, SENTRY_DSN=dsn, DJANGO_SETTINGS_MODULE="searchsite.settings"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    failures = [
        value
        for event in ingest.events()
        for value in event.get("exception", {}).get("values", [])
        if value["type"] == "LookupError"
    ]
    assert failures, f"no task failure reached the ingestion endpoint: {ingest.paths}"
    assert failures[0]["mechanism"]["type"] == "celery"  # caught by the Celery integration


INSPECT = """
    import json

    import django

    django.setup()
    import sentry_sdk

    from celery.app import trace

    client = sentry_sdk.get_client()
    print(json.dumps({
        "active": client.is_active(),
        "dsn": client.dsn,
        "integrations": sorted(client.integrations),
        "celery_patched": trace.build_tracer.__module__ != "celery.app.trace",
    }))
"""


def test_without_a_dsn_nothing_is_initialised(tmp_path):
    result = _run(INSPECT, tmp_path, DJANGO_SETTINGS_MODULE="searchsite.settings")
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert state == {"active": False, "dsn": None, "integrations": [], "celery_patched": False}


def test_a_sample_rate_out_of_range_fails_at_boot(tmp_path):
    result = _run(
        INSPECT,
        tmp_path,
        DJANGO_SETTINGS_MODULE="searchsite.settings",
        SENTRY_TRACES_SAMPLE_RATE="5",
    )
    assert result.returncode != 0
    assert "SENTRY_TRACES_SAMPLE_RATE must be from 0 to 1" in result.stderr
