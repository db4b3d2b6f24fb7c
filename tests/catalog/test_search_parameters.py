"""Search endpoints refuse parameters they do not read, naming them (and the schema says so)."""

from __future__ import annotations

import json

import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_unavailable(settings, redis_url):
    """No encoder or shard runs here: a request that gets past the checks answers 503 fast."""
    settings.SEARCH_TIMEOUT_S = 0.05
    settings.ENCODE_TIMEOUT_S = 0.05


def refused(response) -> dict:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "unknown_parameter", body
    return body


def test_get_names_unsupported_query_parameters(api_client):
    body = refused(api_client.get("/api/search/?q=shoes&colour=red&ordering=price&cursor=2"))
    assert set(body["fields"]) == {"colour", "ordering", "cursor"}
    for name in ("colour", "ordering", "cursor"):
        assert name in body["detail"]
    assert body["fields"]["colour"] == ["not a parameter of this endpoint"]
    accepted = "brand, category, facets, in_stock, k, max_price, min_price, mode, page, q, sort"
    assert accepted in body["detail"]


def test_get_refuses_a_parameter_given_twice(api_client):
    body = refused(api_client.get("/api/search/?q=shoes&q=boots"))
    assert body["fields"] == {"q": ["given more than once"]}


def test_post_reads_nothing_from_the_query_string(api_client):
    body = refused(api_client.post("/api/search/?k=5", {"q": "shoes"}, format="json"))
    assert body["fields"] == {"k": ["goes in the request body, not the query string"]}
    body = refused(api_client.post("/api/search/?ordering=price", {"q": "x"}, format="json"))
    assert body["fields"] == {"ordering": ["not a parameter of this endpoint"]}


@pytest.mark.parametrize("fmt", ["json", "multipart"])
def test_post_names_unknown_body_fields(api_client, fmt):
    body = refused(
        api_client.post("/api/search/", {"q": "shoes", "brand": "Aster", "page": 2}, format=fmt)
    )
    assert body["fields"] == {
        "brand": ["not a field of this request body"],
        "page": ["not a field of this request body"],
    }


def test_similar_names_unsupported_query_parameters(api_client):
    body = refused(api_client.get("/api/products/1/similar/?k=5&brand=Aster"))
    assert body["fields"] == {"brand": ["not a parameter of this endpoint"]}


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("get", "/api/search/?q=shoes&k=5&category=shoes&in_stock=true&format=json", None),
        ("post", "/api/search/", {"q": "shoes", "k": 5, "min_price": 1}),
        ("post", "/api/search/", {"q": "shoes", "csrfmiddlewaretoken": "x"}),  # an HTML form's
        ("get", "/api/products/999999/similar/?k=5&min_price=1", None),
    ],
)
def test_supported_parameters_pass_the_check(api_client, method, path, data):
    fmt = "multipart" if data and "csrfmiddlewaretoken" in data else "json"
    response = getattr(api_client, method)(path, data, format=fmt)
    assert response.json().get("error") != "unknown_parameter", response.content


def test_schema_lists_what_the_check_accepts():
    schema = json.loads(
        OpenApiJsonRenderer().render(SchemaGenerator().get_schema(None, public=True))
    )
    search = schema["paths"]["/api/search/"]
    parameters = {p["name"]: p for p in search["get"]["parameters"] if p["in"] == "query"}
    names = {"q", "k", "category", "min_price", "max_price", "in_stock"}
    assert set(parameters) == names | {"brand", "mode", "sort", "page", "facets"}
    assert parameters["mode"]["schema"]["enum"] == ["hybrid", "vector", "keyword"]
    assert parameters["sort"]["schema"]["enum"] == ["relevance", "price", "-price"]
    facets = parameters["facets"]
    assert facets["schema"]["items"]["enum"] == ["category", "brand", "price", "in_stock"]
    assert facets["explode"] is False
    answer = search["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    component = schema["components"]["schemas"][answer["$ref"].rsplit("/", 1)[-1]]
    assert {"facets", "page", "pages", "matched", "depth"} <= set(component["properties"])
    assert not [p for p in search["post"].get("parameters", []) if p["in"] == "query"]
    for media in search["post"]["requestBody"]["content"].values():
        component = media["schema"]["$ref"].rsplit("/", 1)[-1]
        body = schema["components"]["schemas"][component]
        assert body["additionalProperties"] is False
        assert set(body["properties"]) == names | {"image", "image_url"}
    assert "x-closed-body" not in json.dumps(schema)
    for operation in (search["get"], search["post"]):
        assert "400" in operation["responses"]
    similar = schema["paths"]["/api/products/{id}/similar/"]["get"]
    assert {p["name"] for p in similar["parameters"] if p["in"] == "query"} == names - {"q"}
