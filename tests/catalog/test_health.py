"""The health endpoint reflects the real state of the database and Redis."""

from __future__ import annotations

import pytest

from workers.encoding.registry import publish_model

pytestmark = pytest.mark.django_db


def test_healthy_when_database_and_redis_answer(staff_client, redis_url):
    response = staff_client.get("/api/health/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"]
    assert body["redis"]["ok"]
    assert "queues" in body["celery"]


def test_anonymous_health_has_no_details(api_client, redis_url, settings):
    settings.CLIP_MODEL = "openai/clip-vit-base-patch32"
    body = api_client.get("/api/health/").json()
    assert body == {
        "status": "ok",
        "reasons": [],
        "model": {
            "name": "openai/clip-vit-base-patch32",
            "dim": None,
            "random_weights": None,
            "source": "configured",
            "warning": None,
        },
    }


def test_health_names_the_random_offline_model_with_a_warning(api_client, redis_client):
    publish_model(redis_client, "tiny-clip-d64-i32-s0", 64, random_weights=True)
    model = api_client.get("/api/health/").json()["model"]
    assert model == {
        "name": "tiny-clip-d64-i32-s0",
        "dim": 64,
        "random_weights": True,
        "source": "encoder",
        "warning": "offline demo model with random weights: results are not meaningful",
    }
    publish_model(redis_client, "openai/clip-vit-base-patch32", 512, random_weights=False)
    model = api_client.get("/api/health/").json()["model"]
    assert (model["name"], model["dim"], model["random_weights"], model["warning"]) == (
        "openai/clip-vit-base-patch32",
        512,
        False,
        None,
    )


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
    assert body["model"]["source"] == "configured"
