"""CORS under /api/ for the origins CORS_ALLOWED_ORIGINS names, and preflights that cost
nothing: never throttled, never counted against the search budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.throttles import throttle_rate

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
SHOP = "https://shop.example.com"
ELSEWHERE = "https://evil.example.net"
ALLOW_ORIGIN = "Access-Control-Allow-Origin"


@pytest.fixture
def shop_allowed(settings, redis_url):
    settings.CORS_ALLOWED_ORIGINS = [SHOP]
    return settings


def _preflight(client, path: str, origin: str, method: str = "GET", **extra):
    return client.options(
        path,
        headers={"Origin": origin, "Access-Control-Request-Method": method},
        **extra,
    )


def test_an_allowed_origin_may_read_api_answers(client, shop_allowed):
    answer = client.get("/api/categories/", headers={"Origin": SHOP})
    assert answer.status_code == 200
    assert answer[ALLOW_ORIGIN] == SHOP
    assert "X-Request-ID" in answer["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in answer  # no cookies cross-origin

    preflight = _preflight(client, "/api/search/", SHOP, "POST")
    assert preflight.status_code == 200
    assert preflight[ALLOW_ORIGIN] == SHOP
    assert "POST" in preflight["Access-Control-Allow-Methods"]
    allowed_headers = preflight["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed_headers  # a token, the way cross-origin callers log in
    assert "x-request-id" in allowed_headers


def test_other_origins_get_no_cors_header(client, shop_allowed):
    assert ALLOW_ORIGIN not in client.get("/api/categories/", headers={"Origin": ELSEWHERE})
    preflight = _preflight(client, "/api/search/", ELSEWHERE)
    assert preflight.status_code == 200  # answered, but the browser will not send the call
    assert ALLOW_ORIGIN not in preflight


def test_only_the_api_answers_other_origins(client, shop_allowed):
    page = client.get("/", headers={"Origin": SHOP})
    assert ALLOW_ORIGIN not in page
    assert ALLOW_ORIGIN not in client.get("/admin/login/", headers={"Origin": SHOP})


def test_no_origin_is_allowed_by_default(client, settings, redis_url):
    settings.CORS_ALLOWED_ORIGINS = []
    assert ALLOW_ORIGIN not in client.get("/api/categories/", headers={"Origin": SHOP})
    assert ALLOW_ORIGIN not in _preflight(client, "/api/search/", SHOP)


@pytest.fixture
def search_rate_2_per_minute(redis_url):
    with throttle_rate("search", "2/minute"):
        yield


def test_preflights_are_never_throttled_nor_counted(client, shop_allowed, search_rate_2_per_minute):
    client_addr = {"REMOTE_ADDR": "10.0.0.21"}
    for path in ("/api/search/", "/api/products/1/similar/"):
        statuses = {
            _preflight(client, path, SHOP, method, **client_addr).status_code
            for method in ("GET", "POST")
            for _ in range(50)
        }
        assert statuses == {200}, path
    # A plain OPTIONS (the API's metadata) searches nothing either.
    assert client.options("/api/search/", **client_addr).status_code == 200
    # The whole search budget is still there: two searches, then the limit.
    searches = [client.get("/api/search/", {"k": 0}, **client_addr) for _ in range(3)]
    assert [s.status_code for s in searches] == [400, 400, 429]


def test_allowed_origins_are_read_from_the_environment():
    code = "from django.conf import settings; print(settings.CORS_ALLOWED_ORIGINS)"
    base = {k: v for k, v in os.environ.items() if k != "CORS_ALLOWED_ORIGINS"}
    runs = {}
    for value in (None, "https://a.example.com,https://b.example.com:8443"):
        env = base if value is None else {**base, "CORS_ALLOWED_ORIGINS": value}
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        runs[value] = result.stdout.strip().splitlines()[-1]  # after shell's import notice
    assert runs[None] == "[]"
    assert runs["https://a.example.com,https://b.example.com:8443"] == (
        "['https://a.example.com', 'https://b.example.com:8443']"
    )
