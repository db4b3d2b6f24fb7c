"""The OpenAPI schema says what each operation really answers.

Walks every operation of the schema /api/schema/ serves and provokes the refusals it
documents (bad credentials, no credentials, not staff, a missing object, a page past
the end, a body too large or of the wrong media type, the rate limit) through the real URLs: each
status answered must be one the operation documents, in the one error shape, and an
operation must not document a refusal it never gives (a 429 where nothing throttles).
Schemathesis (test_schemathesis.py) covers the successful answers and bad input.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer

from tests.support.throttles import throttle_rate

pytestmark = pytest.mark.django_db

SCHEMA = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(None, public=True)))
OPERATIONS = [
    (path, method)
    for path, operations in SCHEMA["paths"].items()
    for method in operations
    if method in {"get", "post", "put", "patch", "delete"}
]
WRITES = {"post", "put", "patch", "delete"}
OPEN_WRITES = {"/api/search/", "/api/token/"}  # writes anyone may send
ONE = 1  # the id of the product, category and image the `site` fixture makes
MISSING = 999_999


def operation(path: str, method: str) -> dict:
    return SCHEMA["paths"][path][method]


def documented(path: str, method: str) -> set[int]:
    return {int(code) for code in operation(path, method)["responses"]}


def call(client: Client, path: str, method: str, pk: int = ONE, **kwargs):
    """`method` on `path` (its {id} set to `pk`); a write sends an empty JSON object
    unless `data` and `content_type` say otherwise, a read `data` as its query."""
    url = path.replace("{id}", str(pk))
    if method not in WRITES:
        return client.get(url, kwargs.get("data"))
    kwargs.setdefault("data", "{}")
    kwargs.setdefault("content_type", "application/json")
    return client.generic(method.upper(), url, **kwargs)


def assert_refusal(response, path: str, method: str, status: int) -> None:
    """`response` is the documented refusal `status`, in the error shape."""
    assert response.status_code == status, (path, method, response.content[:300])
    assert status in documented(path, method), f"{method} {path} answers {status} undocumented"
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body["error"], str), body
    assert isinstance(body["detail"], str), body


@pytest.fixture
def site(redis_url):
    from catalog.models import Category, Product, ProductImage

    category = Category.objects.create(id=ONE, name="Mugs", slug="mugs")
    product = Product.objects.create(
        id=ONE, sku="TRUTH-1", title="Mug", price="3.00", category=category
    )
    ProductImage.objects.create(id=ONE, product=product, source_url="https://example.com/a.png")


def token_client(django_user_model, *, staff: bool) -> Client:
    from rest_framework.authtoken.models import Token

    name = "truth-staff" if staff else "truth-user"
    user = django_user_model.objects.create_user(name, is_staff=staff)  # no password: fast
    return Client(
        raise_request_exception=False,
        HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}",
    )


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_every_refusal_answered_is_documented(path, method, site, django_user_model, settings):
    bad_token = Client(raise_request_exception=False, HTTP_AUTHORIZATION="Token not-a-key")
    assert_refusal(call(bad_token, path, method), path, method, 401)

    anonymous = call(Client(raise_request_exception=False), path, method)
    assert anonymous.status_code in documented(path, method), (path, method, anonymous.content)
    if method in WRITES and path not in OPEN_WRITES:
        assert_refusal(anonymous, path, method, 401)
        user = token_client(django_user_model, staff=False)
        assert_refusal(call(user, path, method), path, method, 403)

    staff = token_client(django_user_model, staff=True)
    if "{id}" in path:
        assert_refusal(call(staff, path, method, pk=MISSING), path, method, 404)
    if "requestBody" in operation(path, method):
        wrong = call(staff, path, method, data="q", content_type="text/plain")
        assert_refusal(wrong, path, method, 415)
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
        large = call(staff, path, method, data=json.dumps({"q": "x" * 2000}))
        assert_refusal(large, path, method, 413)
    names = {p["name"] for p in operation(path, method).get("parameters", ())}
    if "page" in names and 404 in documented(path, method):
        assert_refusal(call(staff, path, method, data={"page": 999}), path, method, 404)


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_429_is_documented_where_a_limit_answers_it(path, method, site, django_user_model):
    # Staff: an anonymous write is refused (401) before any limit is counted.
    client = token_client(django_user_model, staff=True)
    with (
        throttle_rate("anon", "1/minute"),
        throttle_rate("user", "1/minute"),
        throttle_rate("search", "1/minute"),
    ):
        call(client, path, method)
        second = call(client, path, method)
    if 429 in documented(path, method):
        assert_refusal(second, path, method, 429)
        assert int(second["Retry-After"]) > 0
        assert "Retry-After" in operation(path, method)["responses"]["429"]["headers"]
    else:
        assert second.status_code != 429, (path, method)


def test_no_operation_documents_what_no_view_answers():
    for path, method in OPERATIONS:
        codes = documented(path, method)
        assert 405 not in codes, (path, method)  # a method not listed is no operation
        if method not in WRITES:
            assert not codes & {403, 413, 415}, (path, method, codes)
        if "{id}" not in path and path not in ("/api/products/", "/api/categories/"):
            assert 404 not in codes, (path, method, codes)  # nothing looked up nor paged


def test_every_error_response_is_the_error_shape():
    error = SCHEMA["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "detail"}
    for path, method in OPERATIONS:
        for code, response in operation(path, method)["responses"].items():
            if int(code) >= 400 and path != "/api/health/":  # health's 503 is its report
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, code)
                assert response["description"], (path, method, code)


def test_a_products_images_are_a_list_and_an_upload_a_201_or_its_200():
    images = SCHEMA["paths"]["/api/products/{id}/images/"]
    listed = images["get"]["responses"]
    assert set(listed) == {"200", "401", "404", "429", "503"}
    assert listed["200"]["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/ProductImage"},
    }
    assert [p["name"] for p in images["get"]["parameters"]] == ["id"]  # not paged nor filtered
    added = images["post"]["responses"]
    for code in ("201", "200"):
        assert added[code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ProductImage"
        }


def test_the_images_list_answers_as_documented(site, api_client):
    response = api_client.get(f"/api/products/{ONE}/images/")
    assert response.status_code == 200
    assert [image["id"] for image in response.json()] == [ONE]


ORDERED_LISTS = {"/api/products/": "products", "/api/categories/": "categories"}


@pytest.mark.parametrize("path", ORDERED_LISTS)
def test_ordering_values_are_enumerated_and_each_one_sorts(path, api_client, redis_url):
    from catalog.models import Category, Product

    (parameter,) = [p for p in operation(path, "get")["parameters"] if p["name"] == "ordering"]
    assert parameter["explode"] is False  # several values, comma-separated
    values = parameter["schema"]["items"]["enum"]
    assert values
    for title, price in [("b", "20.00"), ("c", "10.00"), ("a", "30.00")]:
        category = Category.objects.create(name=f"{title}-name", slug=f"{title}-slug")
        Product.objects.create(sku=f"ORD-{title}", title=title, price=price, category=category)
    for value in values:
        field = value.lstrip("-")
        response = api_client.get(path, {"ordering": value})
        assert response.status_code == 200, response.content
        seen = [row[field] for row in response.json()["results"]]
        assert len(seen) == 3
        assert seen == sorted(seen, reverse=value.startswith("-")), (value, seen)
