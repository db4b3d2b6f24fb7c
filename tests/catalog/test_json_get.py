"""Search GETs that ask for JSON skip DRF's dispatch (catalog/api/json_get.py): they
still authenticate, throttle and answer errors exactly as the DRF path does."""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis
from django.test import Client, RequestFactory
from rest_framework.request import Request

from catalog import product_cache
from catalog.api.json_get import wants_plain_json
from catalog.api.search import SimilarView
from catalog.api.throttles import RedisWindowThrottle
from catalog.card_invalidation import VECTOR_PREFIX
from catalog.models import Category, Product
from tests.support.throttles import throttle_rate

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("redis_url")]

# DRF's own dispatch renders JSON for this Accept too (indent=0 is no indent).
DRF_JSON = "application/json; indent=0"


@pytest.fixture(autouse=True)
def _no_workers(settings):
    """No shard or encoder runs: a request that gets past the checks answers 503 fast."""
    settings.SEARCH_TIMEOUT_S = 0.05
    settings.ENCODE_TIMEOUT_S = 0.05


@pytest.fixture
def inactive() -> Product:
    return Product.objects.create(
        sku="OFF-1", title="Unreleased", price=Decimal(1), is_active=False
    )


def _answers(client: Client, url: str, **extra: str):
    """The lean answer (no Accept header) and DRF's (an Accept the lean path leaves to it)."""
    return client.get(url, **extra), client.get(url, HTTP_ACCEPT=DRF_JSON, **extra)


@pytest.mark.parametrize(
    "url",
    [
        "/api/products/{pk}/similar/",  # inactive: 404
        "/api/products/{pk}/similar/?k=0",  # 400 invalid
        "/api/products/{pk}/similar/?k=5&k=6",  # 400 given twice
        "/api/products/{pk}/similar/?colour=red",  # 400 unknown_parameter
        "/api/products/{pk}/similar/?min_price=5&max_price=1",  # 400 from validate()
        "/api/products/{pk}/similar/?category=nope",  # 400 unknown category
        "/api/products/0/similar/",  # 404: no such id
        "/api/search/?k=0",
        "/api/search/?q=shoes&page=0",
        "/api/search/?q=shoes&facets=colour",
    ],
)
def test_the_lean_path_answers_errors_as_drf_does(client, inactive, url):
    lean, drf = _answers(client, url.format(pk=inactive.pk))
    assert 400 <= lean.status_code < 500, lean.content
    assert lean.status_code == drf.status_code
    assert lean.json() == drf.json()
    assert set(lean.json()) <= {"error", "detail", "fields"}
    for header in ("Content-Type", "Allow", "Vary"):
        assert lean[header] == drf[header], header


def test_a_failed_validation_is_not_remembered(client, inactive):
    url = f"/api/products/{inactive.pk}/similar/"
    for _ in range(2):
        assert client.get(url, {"k": "0"}).json()["fields"] == {
            "k": ["Ensure this value is greater than or equal to 1."]
        }
        assert client.get(url, {"k": "3"}).status_code == 404  # valid; the product is not


def test_the_category_filter_is_looked_up_per_request(client, inactive):
    """The validated parameters are remembered, the category's descendants are not."""
    url = f"/api/products/{inactive.pk}/similar/?category=shoes"
    assert client.get(url).json()["fields"] == {"category": ["unknown category"]}
    Category.objects.create(name="Shoes", slug="shoes")
    assert client.get(url).status_code == 404  # the filter is good; the product is not


def test_the_rate_limit_reads_what_the_view_names_with_its_counter(inactive, redis_url):
    server = redis.Redis.from_url(redis_url)
    server.set(VECTOR_PREFIX + str(inactive.pk), b"raw")
    server.set(product_cache.epoch_read()[1], b"token")
    view = SimilarView(kwargs={"pk": inactive.pk})
    request = Request(RequestFactory().get("/"))
    assert RedisWindowThrottle().allow_request(request, view)
    assert request.read_with_throttle == {
        product_cache.vector_read(inactive.pk): b"raw",
        product_cache.epoch_read(): b"token",
    }


def test_similar_reads_the_vector_once(client, inactive, redis_url):
    """One INCR and two GETs for the request (the vector and the cards' epoch token, with
    the counter): the vector's reply read there is the one the view uses (the cache is
    empty: a miss, then the 404)."""
    server = redis.Redis.from_url(redis_url)
    server.config_resetstat()
    assert client.get(f"/api/products/{inactive.pk}/similar/").status_code == 404
    stats = server.info("commandstats")
    assert stats["cmdstat_incr"]["calls"] == 1
    assert stats["cmdstat_get"]["calls"] == 2


def test_the_lean_path_still_throttles(client, inactive):
    url = f"/api/products/{inactive.pk}/similar/"
    with throttle_rate("search", "2/minute"):
        answers = [client.get(url, REMOTE_ADDR="10.0.0.7") for _ in range(3)]
        other = client.get(url, REMOTE_ADDR="10.0.0.8")
    assert [a.status_code for a in answers] == [404, 404, 429]
    assert answers[2].json()["error"] == "throttled"
    assert 0 <= int(answers[2]["Retry-After"]) <= 60
    assert other.status_code == 404


def test_a_bad_token_is_a_401_on_the_lean_path(client, inactive):
    lean, drf = _answers(
        client, f"/api/products/{inactive.pk}/similar/", HTTP_AUTHORIZATION="Token nope"
    )
    assert lean.status_code == drf.status_code == 401
    assert (
        lean.json() == drf.json() == {"error": "authentication_failed", "detail": "Invalid token."}
    )
    assert lean["WWW-Authenticate"] == drf["WWW-Authenticate"] == "Token"


def test_the_lean_path_throttles_a_token_user_apart_from_the_address(staff_client, inactive):
    """The token is read on the lean path: the user's budget is not the address's."""
    url = f"/api/products/{inactive.pk}/similar/"
    with throttle_rate("search", "2/minute"):
        anonymous = [Client().get(url, REMOTE_ADDR="10.0.0.7").status_code for _ in range(3)]
        user = [staff_client.get(url, REMOTE_ADDR="10.0.0.7").status_code for _ in range(3)]
    assert anonymous == user == [404, 404, 429]


def test_a_browser_still_gets_the_browsable_api(client, inactive):
    answer = client.get(f"/api/products/{inactive.pk}/similar/", HTTP_ACCEPT="text/html")
    assert answer.status_code == 404
    assert answer["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("method", "accept", "query", "lean"),
    [
        ("GET", "", "", True),
        ("GET", "*/*", "k=3", True),
        ("GET", "application/json", "", True),
        ("GET", "text/html", "", False),
        ("GET", "application/json; indent=4", "", False),
        ("GET", "", "format=json", False),
        ("HEAD", "", "", False),
        ("POST", "", "", False),
    ],
)
def test_which_requests_take_the_lean_path(rf, method, accept, query, lean):
    request = rf.generic(method, f"/api/search/?{query}", HTTP_ACCEPT=accept)
    assert wants_plain_json(request) is lean
