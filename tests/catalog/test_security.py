"""Security behaviour a client can observe: CSRF on session writes, rate limits, headers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client

from tests.support.throttles import throttle_rate

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def staff_session(django_user_model):
    user = django_user_model.objects.create_user("boss", password="pw-boss-1234", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_session_writes_need_the_csrf_token(staff_session):
    body = {"sku": "CSRF-1", "title": "t", "price": "1.00"}
    refused = staff_session.post("/api/products/", body, content_type="application/json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]

    staff_session.get("/")  # the page sets the csrftoken cookie
    token = staff_session.cookies["csrftoken"].value
    accepted = staff_session.post(
        "/api/products/", body, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert accepted.status_code == 201


def test_search_is_rate_limited_per_client(client, settings, redis_url):
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]  # DRF reads this very dict
    saved = rates["search"]
    rates["search"] = "2/minute"
    cache.clear()
    try:
        answers = [client.get("/api/search/", {"k": 0}, REMOTE_ADDR="10.0.0.7") for _ in range(3)]
        statuses = [a.status_code for a in answers]
        other = client.get("/api/search/", {"k": 0}, REMOTE_ADDR="10.0.0.8").status_code
    finally:
        rates["search"] = saved
        cache.clear()
    assert statuses == [400, 400, 429]  # bad input still counts; the third call is throttled
    assert 0 <= int(answers[2]["Retry-After"]) <= 60  # until the minute's window ends
    assert other == 400  # another client has its own budget


@pytest.fixture
def search_rate_2_per_minute(redis_url):
    with throttle_rate("search", "2/minute"):
        yield


def _search_statuses(client, forwarded_for: list[str], remote_addr: str) -> list[int]:
    return [
        client.get(
            "/api/search/", {"k": 0}, REMOTE_ADDR=remote_addr, HTTP_X_FORWARDED_FOR=xff
        ).status_code
        for xff in forwarded_for
    ]


def test_a_rotating_x_forwarded_for_does_not_escape_the_rate_limit(
    client, search_rate_2_per_minute
):
    """No proxy trusted (TRUSTED_PROXIES=0, the default): the socket address is the client."""
    forged = ["1.1.1.1", "2.2.2.2", "3.3.3.3, 4.4.4.4"]
    assert _search_statuses(client, forged, "10.0.0.9") == [400, 400, 429]


def test_behind_one_trusted_proxy_the_last_forwarded_hop_is_the_client(
    client, settings, search_rate_2_per_minute
):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = "172.18.0.5"
    # A client may prepend anything; the proxy appends the address it saw last.
    same_client = ["9.9.9.1, 203.0.113.7", "9.9.9.2, 203.0.113.7", "203.0.113.7"]
    assert _search_statuses(client, same_client, proxy) == [400, 400, 429]
    other = _search_statuses(client, ["203.0.113.7, 198.51.100.2"], proxy)
    assert other == [400]  # another client behind the same proxy has its own budget


@pytest.mark.parametrize(("env", "expected"), [({}, "0"), ({"TRUSTED_PROXIES": "1"}, "1")])
def test_trusted_proxies_sets_the_throttles_proxy_count(env, expected):
    """DRF's default NUM_PROXIES (None) would take X-Forwarded-For as the client."""
    code = "from rest_framework.settings import api_settings; print(api_settings.NUM_PROXIES)"
    base = {k: v for k, v in os.environ.items() if k != "TRUSTED_PROXIES"}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == expected  # after shell's auto-import notice


def test_security_headers(client):
    response = client.get("/")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
