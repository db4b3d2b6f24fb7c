"""Security behaviour a client can observe: CSRF on session writes, rate limits, headers."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

pytestmark = pytest.mark.django_db


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


def test_security_headers(client):
    response = client.get("/")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
