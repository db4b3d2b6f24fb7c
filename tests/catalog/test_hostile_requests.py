"""Hostile requests through the real URLs: a 4xx with a reason, never a 500."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

DEEP = 100_000


@pytest.fixture
def raw_client(redis_url):
    """A client that returns 500 responses instead of raising the view's exception."""
    return Client(raise_request_exception=False)


def _assert_json_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert body["detail"]
    return body


@pytest.mark.parametrize("opener", ["[", '{"q":'])
def test_deeply_nested_json_search_is_a_400(raw_client, opener):
    body = opener * DEEP + "1" + ("]" if opener == "[" else "}") * DEEP
    response = raw_client.post("/api/search/", body, content_type="application/json")
    answer = _assert_json_error(response, 400, "parse_error")
    assert "nested" in answer["detail"]


def test_json_just_past_the_depth_limit_is_refused_and_at_it_accepted(raw_client):
    """Deep enough to parse, too deep to take: refused all the same; 64 levels pass."""
    too_deep = '{"q": "red shoe", "k": ' + "[" * 64 + "]" * 64 + "}"
    response = raw_client.post("/api/search/", too_deep, content_type="application/json")
    _assert_json_error(response, 400, "parse_error")
    at_limit = '{"q": "red shoe", "k": ' + "[" * 63 + "]" * 63 + "}"
    response = raw_client.post("/api/search/", at_limit, content_type="application/json")
    _assert_json_error(response, 400, "invalid")  # parsed; `k` is not a number
    assert "k" in response.json()["fields"]


def test_brackets_inside_strings_do_not_count(raw_client):
    body = '{"q": "' + "[" * 500 + '", "k": 0}'
    response = raw_client.post("/api/search/", body, content_type="application/json")
    _assert_json_error(response, 400, "invalid")  # parsed; k=0 is out of range
    assert "k" in response.json()["fields"]


@pytest.mark.parametrize(
    "url", ["/api/products/", "/api/categories/", "/api/products/1/images/", "/api/token/"]
)
def test_deeply_nested_json_is_a_400_on_every_json_endpoint(raw_client, url, django_user_model):
    from catalog.models import Product

    Product.objects.create(id=1, sku="DEEP-1", title="t", price="1.00")
    user = django_user_model.objects.create_user("deep", password="pw-deep-1234", is_staff=True)
    raw_client.force_login(user)
    body = "[" * DEEP + "]" * DEEP
    response = raw_client.post(url, body, content_type="application/json")
    _assert_json_error(response, 400, "parse_error")


@pytest.mark.parametrize("content", ["multipart", "form", "json"])
def test_a_body_over_the_upload_limit_is_a_413(raw_client, settings, content):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    text = "x" * 5000
    if content == "multipart":
        response = raw_client.post("/api/search/", {"q": text})
    elif content == "form":
        body, kind = f"q={text}", "application/x-www-form-urlencoded"
        response = raw_client.post("/api/search/", body, content_type=kind)
    else:
        response = raw_client.post("/api/search/", {"q": text}, content_type="application/json")
    answer = _assert_json_error(response, 413, "too_large")
    assert "1000 bytes" in answer["detail"]


def test_too_many_fields_is_a_400(raw_client):
    fields = {f"f{n}": "x" for n in range(1001)}  # Django's DATA_UPLOAD_MAX_NUMBER_FIELDS: 1000
    response = raw_client.post("/api/search/", fields)
    _assert_json_error(response, 400, "too_many_fields")


def test_too_many_files_is_a_400(raw_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    files = {f"f{n}": SimpleUploadedFile(f"{n}.txt", b"x") for n in range(101)}  # limit: 100
    response = raw_client.post("/api/search/", files)
    _assert_json_error(response, 400, "too_many_files")
