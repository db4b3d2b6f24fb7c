"""Metrics and request ids across real processes: the web's /metrics (the host's aggregate),
a worker's own metrics port, shard gauges, and one request id from the API to a shard's log."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.throttles import throttle_rate
from workers.index.membership import ready_shards
from workers.observability.context import is_valid


def parse(text: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def sample(samples: list, name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def web_metrics(client) -> list:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


@pytest.mark.django_db
def test_metrics_show_api_latency_after_a_request(client) -> None:
    before = web_metrics(client)
    response = client.get("/api/categories/")
    assert response.status_code == 200
    view = response.resolver_match.view_name
    after = web_metrics(client)
    name = "vps_api_request_duration_seconds_count"
    labels = {"view": view, "method": "GET", "status": "200"}
    assert sample(after, name, **labels) == sample(before, name, **labels) + 1
    assert sample(after, "vps_api_request_duration_seconds_bucket", le="+Inf", **labels) >= 1


def views_of(samples: list, name: str) -> set[str]:
    return {s.labels["view"] for s in samples if s.name == name}


@pytest.mark.django_db
def test_only_api_requests_are_api_latency_and_every_request_counts_its_queries(client) -> None:
    """Admin, static, media, /metrics and pages go to their own histogram, by area; the
    API's is labelled by route name only; each request's database queries are counted."""
    from catalog.models import Category

    Category.objects.create(name="Shoes", slug="shoes")
    before = web_metrics(client)
    assert client.get("/api/categories/").status_code == 200
    assert client.get("/api/products/987654/").status_code == 404
    assert client.get("/api/no-such-thing/").status_code == 404
    client.get("/admin/login/")
    client.get("/static/catalog/site.css")
    client.get("/media/nothing.png")
    client.get("/")
    after = web_metrics(client)

    api = "vps_api_request_duration_seconds_count"
    for view, status in (("category-list", "200"), ("product-detail", "404")):
        labels = {"view": view, "method": "GET", "status": status}
        assert sample(after, api, **labels) == sample(before, api, **labels) + 1, view
    assert sample(after, api, view="<unmatched>") == sample(before, api, view="<unmatched>") + 1
    assert not {v for v in views_of(after, api) if "/" in v or v.startswith(("admin", "static"))}
    web = "vps_web_request_duration_seconds_count"
    for area in ("admin", "static", "media", "metrics", "site"):
        assert sample(after, web, area=area) > sample(before, web, area=area), area
    assert not [s for s in after if s.name == api and s.labels["view"] in ("admin", "static")]

    queries = "vps_db_queries_per_request"
    label = {"view": "category-list"}
    assert (
        sample(after, f"{queries}_count", **label)
        == sample(before, f"{queries}_count", **label) + 1
    )
    assert (
        sample(after, f"{queries}_sum", **label) >= sample(before, f"{queries}_sum", **label) + 1
    )  # the categories are read from the database
    seconds = "vps_db_seconds_per_request_sum"
    assert sample(after, seconds, **label) > sample(before, seconds, **label)


@pytest.fixture
def anon_rate_2_per_minute(redis_url):
    with throttle_rate("anon", "2/minute"):
        yield


@pytest.mark.django_db
def test_options_and_preflights_are_never_throttled_nor_counted(
    client, settings, anon_rate_2_per_minute
) -> None:
    """DRF's anonymous limit counted every OPTIONS: a page's preflights (or a client asking
    for a view's metadata) spent the budget and could be answered 429."""
    settings.CORS_ALLOWED_ORIGINS = ["https://shop.example.com"]
    addr = {"REMOTE_ADDR": "10.0.0.77"}
    preflight = {
        "Origin": "https://shop.example.com",
        "Access-Control-Request-Method": "GET",
    }
    before = web_metrics(client)
    statuses = [client.options("/api/categories/", **addr).status_code for _ in range(5)]
    statuses += [
        client.options("/api/categories/", headers=preflight, **addr).status_code for _ in range(5)
    ]
    assert statuses == [200] * 10
    gets = [client.get("/api/categories/", **addr).status_code for _ in range(3)]
    assert gets == [200, 200, 429]  # the whole budget was still there
    after = web_metrics(client)

    api = "vps_api_request_duration_seconds_count"
    options = {"view": "category-list", "method": "OPTIONS"}
    assert (
        sample(after, api, status="200", **options)
        == sample(before, api, status="200", **options) + 10
    )  # preflights too: resolved to their route though no view ran
    assert sample(after, api, status="429", **options) == 0
    throttled = {"view": "category-list", "method": "GET", "status": "429"}
    assert sample(after, api, **throttled) == sample(before, api, **throttled) + 1


@pytest.mark.django_db
def test_request_id_round_trip(client) -> None:
    given = client.get("/api/health/", headers={"X-Request-ID": "abc-123"})
    assert given["X-Request-ID"] == "abc-123"
    for hostile in ("x" * 65, "a b", "<script>", "id\r\nSet-Cookie: x=1"):
        replaced = client.get("/api/categories/", headers={"X-Request-ID": hostile})
        assert replaced["X-Request-ID"] != hostile
        assert is_valid(replaced["X-Request-ID"])
    made = client.get("/api/categories/")["X-Request-ID"]
    assert is_valid(made)
    assert made != client.get("/api/categories/")["X-Request-ID"]


@pytest.mark.django_db
def test_metrics_can_be_restricted(client, settings, django_user_model) -> None:
    settings.METRICS_ALLOW_ANONYMOUS = False
    settings.METRICS_TOKEN = "scrape-secret-1"
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert (
        client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-1"}).status_code
        == 200
    )
    staff = django_user_model.objects.create_user("ops", password="pw-ops-123456", is_staff=True)
    client.force_login(staff)
    assert client.get("/metrics").status_code == 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def poll(fn, timeout: float = 30.0):
    """fn() until it returns something truthy (workers load and report asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        found = fn()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


MODEL, DIM = "obs-model", 8


def stored_product() -> int:
    """A product with a stored embedding: "more like this" searches the shards with it,
    so no encode worker is needed."""
    import numpy as np

    from catalog.models import Embedding, Product, ProductImage

    product = Product.objects.create(sku="OBS-1", title="Observed", price="1.00")
    image = ProductImage.objects.create(product=product, source_url="https://example.com/a.png")
    vector = np.full(DIM, 1 / np.sqrt(DIM), dtype="<f4")
    Embedding.objects.create(
        image=image, model=MODEL, dim=DIM, vector=vector.tobytes(), source_sha256="0" * 64
    )
    return product.pk


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_workers_metrics_and_a_request_id_to_the_shard(
    redis_url, redis_client, worker_logs, api_client, client
) -> None:
    from tests.support.processes import CeleryWorker, stop_together
    from workers.encoding.registry import publish_model
    from workers.queues import shard_queue

    publish_model(redis_client, MODEL, DIM, random_weights=False)  # as an encode worker would
    product = stored_product()
    port = free_port()
    workers = [
        CeleryWorker(
            [shard_queue(n)],
            redis_url,
            worker_logs,
            LOG_FORMAT="json",
            RPC_SLOW_LOG_MS="0",  # log every request, under its request id
            SHARD_METRICS_EVERY_S="0.5",
            WORKER_METRICS_PORT=str(port) if n == 0 else "0",
        )
        for n in range(2)
    ]
    try:
        for worker in workers:
            worker.launch()
        for worker in workers:
            worker.ready()
        pids = {str(w.proc.pid) for w in workers if w.proc is not None}

        # The worker's own port answers with Prometheus text, its shard's gauges included.
        def worker_port() -> list:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                samples = parse(reply.read().decode())
            return samples if any(s.name == "vps_shard_vectors" for s in samples) else []

        assert poll(worker_port), "no shard gauges on the worker's metrics port"

        # The web's /metrics sums the host's processes: both replicas' gauges are there.
        def both_shards() -> list:
            found = [
                s
                for s in web_metrics(client)
                if s.name == "vps_shard_update_lag_seconds" and s.labels.get("pid") in pids
            ]
            return found if {s.labels["shard"] for s in found} == {"0", "1"} else []

        lag = poll(both_shards)
        assert lag, "shard gauges of both workers missing from /metrics"
        assert all(s.value >= 0 for s in lag)

        # One request id from the API, through the RPC, into a shard worker's log.
        assert poll(lambda: ready_shards(redis_client, 2) == {0, 1}), "replicas not ready"
        request_id = "obs-test-0042"
        response = api_client.get(
            f"/api/products/{product}/similar/", {"k": 3}, HTTP_X_REQUEST_ID=request_id
        )
        assert response.status_code == 200, response.content
        assert response.json()["shards"] == {"answered": 2, "total": 2, "missing": []}
        assert response["X-Request-ID"] == request_id

        def logged() -> list:
            lines = [json.loads(line) for line in workers[0].log().splitlines() if line[:1] == "{"]
            return [e for e in lines if e.get("request_id") == request_id]

        entries = poll(logged, timeout=10)
        assert entries, workers[0].log()[-2000:]
        assert any("shard-0" in e["message"] for e in entries)
        after = web_metrics(client)
        assert sample(after, "vps_rpc_batch_size_count", server="shard-0") >= 1
        assert sample(after, "vps_search_shard_reply_seconds_count", shard="1") >= 1
    finally:
        stop_together(workers)
