"""Concurrent writes through the real API, from real threads, on the real database.

Each request runs in its own thread with its own database connection and commits for
real (`transactional_db`); a barrier starts them together. Run these on PostgreSQL as
well (DATABASE_URL): there the row locks do the work, on SQLite the IMMEDIATE
transactions. Every answer must be a success or a 404, never a 500, and nothing a
delete answered 204 for may exist afterwards.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, connections, transaction
from django.http import Http404
from rest_framework.test import APIClient

from catalog.models import Category, Product, ProductImage
from catalog.services.images import image_add_upload
from catalog.services.products import product_create, product_delete, product_update
from tests.support.images import image_bytes

pytestmark = pytest.mark.usefixtures("redis_url")

ROUNDS = 25


@pytest.fixture
def token(transactional_db) -> str:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user("racer", password="pw-racer-123", is_staff=True)
    return Token.objects.create(user=user).key


def call(token: str, method: str, url: str, **kwargs: object) -> Callable[[], object]:
    """One staff request, ready to send (its own client: one per thread)."""
    client = APIClient(raise_request_exception=False)  # a 500 is an answer to assert on
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return lambda: getattr(client, method)(url, **kwargs)


def together(*calls: Callable[[], object]) -> list:
    """Run the calls in threads released at once; their results, in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def work(n: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=10)
            results[n] = call()
        except Exception as exc:  # reported by the assertion below
            results[n] = exc
        finally:
            connections.close_all()  # this thread's connection (PostgreSQL drops the test db)

    threads = [threading.Thread(target=work, args=(n, c)) for n, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a request did not finish within 60 s"
    return results


def statuses(responses: list) -> list[int]:
    for response in responses:
        assert not isinstance(response, Exception), repr(response)
        assert response.status_code < 500, response.content[:500]
    return [r.status_code for r in responses]


def product_with_image(n: int) -> Product:
    product = product_create(sku=f"RACE-{n}", title=f"Racer {n}", price=Decimal("5"))
    upload = SimpleUploadedFile("p.png", image_bytes("PNG", colour=(n % 250, 40, 90)))
    image_add_upload(product=product, upload=upload)
    return product


def upload(n: int = 0) -> SimpleUploadedFile:
    return SimpleUploadedFile("p.png", image_bytes("PNG", colour=(n % 250, 200, 10)), "image/png")


def test_a_patch_racing_a_delete_never_brings_the_product_back(token):
    revived = []
    for n in range(ROUNDS):
        pid = product_with_image(n).pk
        patch, delete = statuses(
            together(
                call(token, "patch", f"/api/products/{pid}/", data={"title": "R"}, format="json"),
                call(token, "delete", f"/api/products/{pid}/"),
            )
        )
        assert delete == 204
        assert patch in {200, 404}
        if Product.objects.filter(pk=pid).exists():
            revived.append(pid)
    assert revived == [], f"{len(revived)} of {ROUNDS} deleted products exist again"


def test_an_image_added_to_a_product_being_deleted_is_a_404_not_an_orphan(token):
    for n in range(ROUNDS):
        pid = product_create(sku=f"RACE-{n}", title="x", price=Decimal("1")).pk
        images = f"/api/products/{pid}/images/"
        added, linked, delete = statuses(
            together(
                call(token, "post", images, data={"image": upload(n)}, format="multipart"),
                call(token, "post", images, data={"source_url": f"https://a.example/{n}.png"}),
                call(token, "delete", f"/api/products/{pid}/"),
            )
        )
        assert delete == 204
        assert added in {201, 404}
        assert linked in {201, 404}
        assert not Product.objects.filter(pk=pid).exists()
        assert not ProductImage.objects.filter(product_id=pid).exists()


def test_deletes_racing_each_other_and_image_deletes(token):
    for n in range(ROUNDS):
        product = product_with_image(n)
        image_id = product.images.get().pk
        first, second, image = statuses(
            together(
                call(token, "delete", f"/api/products/{product.pk}/"),
                call(token, "delete", f"/api/products/{product.pk}/"),
                call(token, "delete", f"/api/images/{image_id}/"),
            )
        )
        assert sorted([first, second]) == [204, 404]  # one delete found it, the other not
        assert image in {204, 404}
        assert not Product.objects.filter(pk=product.pk).exists()
        assert not ProductImage.objects.filter(pk=image_id).exists()


def test_category_edits_racing_a_delete(token):
    for n in range(ROUNDS):
        category = Category.objects.create(name=f"Cat {n}", slug=f"cat-{n}")
        product = product_create(sku=f"RACE-{n}", title="x", price=Decimal("1"))
        url = f"/api/categories/{category.pk}/"
        rename, move, delete = statuses(
            together(
                call(token, "patch", url, data={"name": "Renamed"}, format="json"),
                call(
                    token,
                    "patch",
                    f"/api/products/{product.pk}/",
                    data={"category": category.slug},
                    format="json",
                ),
                call(token, "delete", url),
            )
        )
        assert delete == 204
        assert rename in {200, 404}
        assert move in {200, 400}  # 400: the category named in the request has gone
        assert not Category.objects.filter(pk=category.pk).exists()
        product.refresh_from_db()
        assert product.category_id is None


def test_two_categories_moved_under_each_other_at_once_make_no_cycle(token):
    for n in range(ROUNDS):
        left = Category.objects.create(name=f"L {n}", slug=f"l-{n}")
        right = Category.objects.create(name=f"R {n}", slug=f"r-{n}")
        answers = statuses(
            together(
                call(
                    token,
                    "patch",
                    f"/api/categories/{left.pk}/",
                    data={"parent": right.slug},
                    format="json",
                ),
                call(
                    token,
                    "patch",
                    f"/api/categories/{right.pk}/",
                    data={"parent": left.slug},
                    format="json",
                ),
            )
        )
        assert sorted(answers) == [200, 400]
        left.refresh_from_db()
        right.refresh_from_db()
        assert not (left.parent_id == right.pk and right.parent_id == left.pk)


def test_a_stale_instance_is_not_saved_back(transactional_db):
    """The race in one thread: the instance a view loaded, updated after the delete."""
    product = product_create(sku="STALE", title="Old", price=Decimal("1"))
    stale = Product.objects.get(pk=product.pk)
    product_delete(product=product)
    with pytest.raises(Http404):
        product_update(product=stale, title="New")
    with pytest.raises(Http404):
        product_delete(product=stale)
    assert not Product.objects.filter(pk=stale.pk).exists()


def test_the_same_image_uploaded_twice_at_once_is_stored_once(token, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path  # ids are reused between tests: count this test's files
    for n in range(ROUNDS):
        pid = product_create(sku=f"TWIN-{n}", title="x", price=Decimal("1")).pk
        images = f"/api/products/{pid}/images/"
        answers = together(
            call(token, "post", images, data={"image": upload(n)}, format="multipart"),
            call(token, "post", images, data={"image": upload(n)}, format="multipart"),
        )
        assert sorted(statuses(answers)) == [200, 201]
        assert answers[0].json()["id"] == answers[1].json()["id"]
        assert ProductImage.objects.filter(product_id=pid).count() == 1
        assert len(stored_files(pid)) == 1


def stored_files(product_id: int) -> list[Path]:
    folder = Path(django_settings.MEDIA_ROOT) / "products" / str(product_id)
    return sorted(folder.iterdir()) if folder.exists() else []


def test_an_upload_losing_to_a_writer_without_the_lock_answers_with_its_image(
    transactional_db, redis_url, settings, tmp_path
):
    """A row written outside the service (which skips the product lock) is committed
    while the service's upload runs: the unique constraint turns the upload into the
    existing image, and its own stored file is removed."""
    from catalog.services.images import image_get_or_add_upload  # new with the fix

    settings.MEDIA_ROOT = tmp_path
    product = product_create(sku="TWIN", title="x", price=Decimal("1"))
    data = image_bytes("PNG")
    digest = hashlib.sha256(data).hexdigest()
    written, release = threading.Event(), threading.Event()

    def other_writer() -> ProductImage:
        try:
            with transaction.atomic():
                image = ProductImage.objects.create(
                    product_id=product.pk, image=ContentFile(data, name="other.png"), sha256=digest
                )
                written.set()
                release.wait(timeout=10)
                if connection.vendor == "postgresql":
                    time.sleep(0.5)  # the upload below reaches its INSERT meanwhile
            return image
        finally:
            connections.close_all()

    holder: list = []
    thread = threading.Thread(target=lambda: holder.append(other_writer()))
    thread.start()
    assert written.wait(timeout=10)
    release.set()  # SQLite: the upload's transaction waits for this one to commit;
    # PostgreSQL: its INSERT waits on the uncommitted row's unique index entry
    image, created = image_get_or_add_upload(
        product=product, upload=SimpleUploadedFile("p.png", data, "image/png")
    )
    thread.join(timeout=20)
    assert not created
    assert image.pk == holder[0].pk
    assert ProductImage.objects.filter(product=product).count() == 1
    assert [p.name for p in stored_files(product.pk)] == ["other.png"]
