"""The health endpoint reflects the real state of the database and Redis."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_healthy_when_database_and_redis_answer(staff_client, redis_url):
    response = staff_client.get("/api/health/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"]
    assert body["redis"]["ok"]
    assert "queues" in body["celery"]


def test_anonymous_health_has_no_details(api_client, redis_url):
    body = api_client.get("/api/health/").json()
    assert body == {"status": "ok", "reasons": []}


def test_redis_down_is_503_with_reason(staff_client, redis_server):
    redis_server.stop()
    try:
        response = staff_client.get("/api/health/")
    finally:
        redis_server.start()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert any(reason.startswith("redis:") for reason in body["reasons"])
    assert body["redis"]["ok"] is False
