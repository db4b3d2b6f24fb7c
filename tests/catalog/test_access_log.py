"""The web's access log: one line a request, written by the application, secrets redacted;
and an API token in a query string authenticates nothing."""

from __future__ import annotations

import json
import logging

import pytest
from django.test import Client

from workers.observability.logs import JsonFormatter
from workers.observability.redact import redact_query

pytestmark = pytest.mark.django_db

ACCESS_LOGGER = "searchsite.access"


@pytest.fixture
def staff_token(django_user_model) -> str:
    from rest_framework.authtoken.models import Token

    user = django_user_model.objects.create_user("boss", password="pw-boss-1234", is_staff=True)
    return Token.objects.create(user=user).key


def _access_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS_LOGGER]


@pytest.mark.parametrize("param", ["token", "auth_token"])
def test_a_token_in_the_query_string_is_redacted_and_authenticates_nothing(
    redis_url, caplog, staff_token, param
):
    client = Client()
    body = {"sku": "QS-1", "title": "t", "price": "1.00"}
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        response = client.post(
            f"/api/products/?{param}={staff_token}&q=x", body, content_type="application/json"
        )
    assert response.status_code == 401  # headers only: the query string is no credential
    [line] = _access_lines(caplog)
    message = line.getMessage()
    assert staff_token not in message
    assert f"{param}=[redacted]" in message
    assert "q=x" in message
    assert "POST /api/products/" in message
    assert " 401 " in message
    assert line.request_id == response["X-Request-ID"]


def test_no_line_below_the_log_level(redis_url, caplog):
    with caplog.at_level(logging.WARNING, logger=ACCESS_LOGGER):
        response = Client().get("/api/categories/")
    assert response.status_code == 200
    assert _access_lines(caplog) == []


def test_one_access_line_a_request_with_status_duration_and_request_id(redis_url, caplog):
    client = Client()
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        response = client.get(
            "/api/categories/?token=abc123secret&q=x", HTTP_X_REQUEST_ID="req-abc-1"
        )
    assert response.status_code == 200
    [line] = _access_lines(caplog)
    message = line.getMessage()
    assert "abc123secret" not in message
    assert "GET /api/categories/?token=[redacted]&q=x 200" in message
    assert line.request_id == "req-abc-1"
    entry = json.loads(JsonFormatter().format(line))  # LOG_FORMAT=json: fields, not text
    assert entry["request_id"] == "req-abc-1"
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/api/categories/", 200)
    assert entry["query"] == "token=[redacted]&q=x"
    assert isinstance(entry["duration_ms"], float)
    assert entry["duration_ms"] >= 0


def test_the_path_cannot_forge_log_lines(redis_url, caplog):
    client = Client()
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        client.get("/api/nothing%0A2026-01-01%20INFO%20forged/")
    [line] = _access_lines(caplog)
    assert "\n" not in line.getMessage()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=x", "q=x"),
        ("token=abc&q=x", "token=[redacted]&q=x"),
        ("Api-Key=k1&page=2", "Api-Key=[redacted]&page=2"),
        (
            "access_token=a&password=p&secret=s",
            "access_token=[redacted]&password=[redacted]&secret=[redacted]",
        ),
        (
            "X-Amz-Signature=abc&X-Amz-Security-Token=t",
            "X-Amz-Signature=[redacted]&X-Amz-Security-Token=[redacted]",
        ),
        ("key=1&auth=2&sig=3", "key=[redacted]&auth=[redacted]&sig=[redacted]"),
        ("%74oken=abc", "%74oken=[redacted]"),  # an encoded name is still a token
        ("token", "token"),  # no value, nothing to hide
        ("", ""),
    ],
)
def test_redact_query(query, expected):
    assert redact_query(query) == expected
