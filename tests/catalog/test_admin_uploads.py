"""Admin uploads: the same file twice to a product is a form error, never a 500."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalog.models import ProductImage
from catalog.services.images import image_add_upload
from catalog.services.products import product_create
from tests.support.images import image_bytes

pytestmark = pytest.mark.django_db


def _change_form(product, uploads: list[bytes], existing: list[ProductImage]) -> dict:
    data = {
        "sku": product.sku,
        "title": product.title,
        "description": "",
        "brand": "",
        "category": "",
        "price": str(product.price),
        "currency": "USD",
        "in_stock": "on",
        "is_active": "on",
        "attributes": "{}",
        "images-TOTAL_FORMS": str(len(existing) + len(uploads)),
        "images-INITIAL_FORMS": str(len(existing)),
        "images-MIN_NUM_FORMS": "0",
        "images-MAX_NUM_FORMS": "1000",
    }
    for n, image in enumerate(existing):
        data.update({f"images-{n}-id": str(image.pk), f"images-{n}-product": str(product.pk)})
        data.update({f"images-{n}-position": str(image.position), f"images-{n}-source_url": ""})
    for n, content in enumerate(uploads, start=len(existing)):
        data[f"images-{n}-product"] = str(product.pk)
        data[f"images-{n}-position"] = str(n)
        data[f"images-{n}-source_url"] = ""
        data[f"images-{n}-image"] = SimpleUploadedFile(f"up{n}.png", content, "image/png")
    return data


@pytest.fixture
def admin_session(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", password="pw-root-1234")
    client.force_login(user)
    return client


def test_an_image_the_product_has_is_refused_in_the_form(admin_session):
    product = product_create(sku="ADM-1", title="Lamp", price=Decimal("9.00"))
    content = image_bytes("PNG", colour=(10, 120, 200))
    first = image_add_upload(
        product=product, upload=SimpleUploadedFile("a.png", content, "image/png")
    )
    url = reverse("admin:catalog_product_change", args=[product.pk])

    answer = admin_session.post(url, _change_form(product, [content], [first]))

    assert answer.status_code == 200  # the form again, with its error
    assert "This product already has this image." in answer.content.decode()
    assert list(product.images.values_list("pk", flat=True)) == [first.pk]


def test_the_same_new_file_twice_in_one_submission_is_refused(admin_session):
    product = product_create(sku="ADM-2", title="Vase", price=Decimal("5.00"))
    content = image_bytes("PNG", colour=(200, 120, 10))
    url = reverse("admin:catalog_product_change", args=[product.pk])

    answer = admin_session.post(url, _change_form(product, [content, content], []))

    assert answer.status_code == 200
    assert "The same image is uploaded twice." in answer.content.decode()
    assert not product.images.exists()

    stored = admin_session.post(url, _change_form(product, [content], []))
    assert stored.status_code == 302  # one copy is fine
    assert product.images.count() == 1
