"""Search end to end: real encode and shard workers (Celery), real Redis RPC, tiny CLIP."""

from __future__ import annotations

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from catalog.models import IndexState, Product
from tests.support.images import image_bytes
from workers.index.log import shard_for_product

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

COLOURS = [
    (220, 30, 30),
    (30, 200, 40),
    (30, 40, 220),
    (230, 210, 30),
    (20, 20, 20),
    (240, 240, 240),
]


def wait_indexed(ids: list[int], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = set(Product.objects.filter(pk__in=ids).values_list("index_state", flat=True))
        if states == {IndexState.INDEXED}:
            return
        time.sleep(0.2)
    raise AssertionError(f"products not indexed: {states}")


def search_until(client, method: str, url: str, predicate, timeout: float = 30.0, **kw):
    """Search repeatedly until the answer satisfies predicate (index updates are asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        for value in kw.get("data", {}).values():
            if hasattr(value, "seek"):
                value.seek(0)  # an upload is read by each attempt
        response = getattr(client, method)(url, **kw)
        if response.status_code == 200 and predicate(response.json()):
            return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"{response.status_code}: {response.content[:500]!r}")
        time.sleep(0.2)


def add_product(staff_client, n: int, colour: tuple[int, int, int]) -> int:
    category = "warm" if n % 2 == 0 else "cool"
    staff_client.post("/api/categories/", {"name": category, "slug": category})
    product = staff_client.post(
        "/api/products/",
        {
            "sku": f"E2E-{n}",
            "title": f"Ball {n}",
            "price": f"{10 + n}.00",
            "category": category,
            "in_stock": n != 2,
        },
        format="json",
    ).json()
    upload = SimpleUploadedFile("p.png", image_bytes("PNG", colour=colour), "image/png")
    staff_client.post(
        f"/api/products/{product['id']}/images/", {"image": upload}, format="multipart"
    )
    return product["id"]


def test_search_end_to_end(shard_workers, staff_client, api_client):
    ids = [add_product(staff_client, n, colour) for n, colour in enumerate(COLOURS)]
    while {shard_for_product(i, 2) for i in ids} != {0, 1}:  # ids are hashed to shards
        ids.append(add_product(staff_client, len(ids), (60 + 25 * len(ids) % 150, 90, 140)))
    wait_indexed(ids)
    assert {shard_for_product(i, 2) for i in ids} == {0, 1}, "the products span both shards"

    # The same photo finds its product first.
    photo = SimpleUploadedFile("q.png", image_bytes("PNG", colour=COLOURS[3]), "image/png")
    body = search_until(
        api_client,
        "post",
        "/api/search/",
        # A card cached while a slow batch was sent again may say "encoding" until the
        # state's next change forgets it: the answer is compared once it has settled.
        lambda b: (
            len(b["results"]) == len(ids)
            and b["results"][0]["product"]["index_state"] == "indexed"
            and b["results"][0]["product"] == api_client.get(f"/api/products/{ids[3]}/").json()
        ),
        data={"image": photo, "k": 10},
        format="multipart",
    )
    assert body["results"][0]["product"]["id"] == ids[3]
    assert body["partial"] is False
    assert body["shards"] == {"answered": 2, "total": 2, "missing": []}
    assert body["results"][0]["image"].endswith(".png")
    # A result shows the product as the products API does (from its cached card), and an
    # edit shows in the very next search.
    # (search_until compared it with the products API: a second read here could catch a
    # duplicate encode task flipping the state to "encoding" and back)
    shown = body["results"][0]["product"]
    assert shown["index_state"] == "indexed"  # `api_client` is the staff client here
    # Anyone else sees the same product without the staff-only fields.
    photo.seek(0)
    anonymous = APIClient()
    public = anonymous.post("/api/search/", {"image": photo, "k": 10}, format="multipart")
    hit = public.json()["results"][0]["product"]
    assert hit == anonymous.get(f"/api/products/{ids[3]}/").json()
    assert "index_state" not in hit
    assert shown["images"][0]["url"].startswith("http://testserver/")
    staff_client.patch(f"/api/products/{ids[3]}/", {"title": "Renamed"}, format="json")
    photo.seek(0)
    again = api_client.post("/api/search/", {"image": photo, "k": 10}, format="multipart")
    assert again.json()["results"][0]["product"]["title"] == "Renamed"

    # The shard workers answer maintenance tasks on their own queues.
    from workers.queues import shard_queue
    from workers.tasks.shards import shard_snapshot, shard_stats

    counts = [
        shard_stats.apply_async(args=[n], queue=shard_queue(n)).get(timeout=20)["vectors"]
        for n in range(2)
    ]
    assert sum(counts) == len(ids)
    assert shard_snapshot.apply_async(args=[0], queue=shard_queue(0)).get(timeout=20)

    # Text search returns products (the tiny model's ranking is arbitrary).
    text = api_client.get("/api/search/", {"q": "a yellow ball", "k": 3})
    assert text.status_code == 200, text.content
    assert len(text.json()["results"]) == 3

    # More like this: never the product itself.
    similar = api_client.get(f"/api/products/{ids[0]}/similar/", {"k": 4}).json()
    assert len(similar["results"]) == 4
    assert ids[0] not in [r["product"]["id"] for r in similar["results"]]

    # Filters run inside the shards.
    warm = api_client.get("/api/search/", {"q": "ball", "k": 10, "category": "warm"}).json()
    assert {r["product"]["id"] for r in warm["results"]} == {ids[0], ids[2], ids[4]}
    stocked = api_client.get(
        "/api/search/", {"q": "ball", "k": 10, "in_stock": "true", "max_price": "13.50"}
    ).json()
    assert {r["product"]["id"] for r in stocked["results"]} == {ids[0], ids[1], ids[3]}

    # A deleted product disappears.
    staff_client.delete(f"/api/products/{ids[3]}/")
    search_until(
        api_client,
        "get",
        "/api/search/",
        lambda b: ids[3] not in [r["product"]["id"] for r in b["results"]],
        data={"q": "ball", "k": 10},
    )

    # One shard down: a partial answer within the deadline, not an error.
    shard_workers[1].kill()
    started = time.monotonic()
    partial = api_client.get("/api/search/", {"q": "ball", "k": 10})
    assert time.monotonic() - started < 5
    assert partial.status_code == 200
    assert partial.json()["partial"] is True
    assert partial.json()["shards"] == {"answered": 1, "total": 2, "missing": [1]}

    # No shard at all: 503 with a reason.
    shard_workers[0].kill()
    down = api_client.get("/api/search/", {"q": "ball", "k": 10})
    assert down.status_code == 503
    assert "search" in down.json()["detail"]


def test_bad_search_input_is_400(api_client):
    cases = [
        api_client.get("/api/search/"),
        api_client.get("/api/search/", {"q": "x", "k": 0}),
        api_client.get("/api/search/", {"q": "x", "k": 101}),
        api_client.get("/api/search/", {"q": "x", "min_price": 5, "max_price": 1}),
        api_client.get("/api/search/", {"q": "x", "in_stock": "maybe"}),
        api_client.get("/api/search/", {"q": "x", "category": "no-such-category"}),
        api_client.post("/api/search/", {}, format="json"),
        api_client.post("/api/search/", {"image_url": "ftp://example.com/a.png"}, format="json"),
    ]
    for response in cases:
        assert response.status_code == 400, response.content
        assert response.json()["detail"]


def test_similar_of_a_missing_or_unencoded_product(api_client):
    from decimal import Decimal

    from catalog.services.products import product_create

    hidden = product_create(sku="HID-1", title="Hidden", price=Decimal("1.00"), is_active=False)
    fresh = product_create(sku="NEW-1", title="No image yet", price=Decimal("1.00"))
    assert api_client.get("/api/products/999999/similar/").status_code == 404
    assert api_client.get(f"/api/products/{2**70}/similar/").status_code == 404
    assert api_client.get(f"/api/products/{hidden.pk}/similar/").status_code == 404
    pending = api_client.get(f"/api/products/{fresh.pk}/similar/")
    assert pending.status_code == 400
    assert pending.json()["error"] == "not_indexed"
