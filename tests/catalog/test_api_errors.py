"""Unexpected exceptions under /api/: a logged JSON 500 with the request id, in DEBUG and
not, never Django's HTML page and nothing of the exception's text."""

from __future__ import annotations

import logging

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def request_id_logs(caplog):
    """caplog with the request id filter the console handler has (settings.LOGGING)."""
    from workers.observability.logs import RequestIdFilter

    caplog.handler.addFilter(RequestIdFilter())
    return caplog


@pytest.fixture
def raw_client(redis_url):
    """A client that returns 500 responses instead of raising the view's exception."""
    return Client(raise_request_exception=False)


def _assert_json_500(response) -> dict:
    assert response.status_code == 500, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == "server_error"
    assert body["detail"]
    return body


SECRET_INTERNALS = "password=hunter2 at /srv/app/internal.py"


def _explode(*args, **kwargs):
    raise RuntimeError(SECRET_INTERNALS)


@pytest.mark.parametrize("debug", [True, False])
def test_a_fault_in_an_api_view_is_a_logged_json_500(
    raw_client, settings, monkeypatch, request_id_logs, debug
):
    settings.DEBUG = debug
    monkeypatch.setattr("catalog.search.text_vector", _explode)
    with request_id_logs.at_level(logging.ERROR):
        response = raw_client.get("/api/search/", {"q": "shoe"})
    body = _assert_json_500(response)
    assert set(body) == {"error", "detail"}
    assert SECRET_INTERNALS not in response.content.decode()
    assert "RuntimeError" not in response.content.decode()
    request_id = response["X-Request-ID"]
    assert request_id in body["detail"]  # the client can quote it
    logged = [r for r in request_id_logs.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert logged, "the exception was not logged with its traceback"
    assert logged[0].request_id == request_id


@pytest.mark.parametrize("debug", [True, False])
def test_a_fault_outside_the_view_under_api_is_a_json_500(
    raw_client, settings, monkeypatch, request_id_logs, debug
):
    """A middleware that fails after the view answered: Django's own 500 path."""
    settings.DEBUG = debug
    monkeypatch.setattr("catalog.middleware._view_label", _explode)
    with request_id_logs.at_level(logging.ERROR):
        response = raw_client.get("/api/categories/")
    body = _assert_json_500(response)
    assert SECRET_INTERNALS not in response.content.decode()
    assert response["X-Request-ID"] in body["detail"]
    logged = [r for r in request_id_logs.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert logged, "the exception was not logged with its traceback"
    assert logged[0].request_id == response["X-Request-ID"]


@pytest.mark.parametrize("debug", [True, False])
def test_a_fault_in_the_request_id_middleware_under_api_is_a_json_500(
    raw_client, settings, monkeypatch, debug
):
    settings.DEBUG = debug
    monkeypatch.setattr("catalog.middleware.new_request_id", _explode)
    response = raw_client.get("/api/categories/")
    _assert_json_500(response)
    assert SECRET_INTERNALS not in response.content.decode()


def test_a_fault_outside_the_api_keeps_django_s_page(raw_client, settings, monkeypatch):
    settings.DEBUG = False
    monkeypatch.setattr("catalog.middleware._view_label", _explode)
    response = raw_client.get("/")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
