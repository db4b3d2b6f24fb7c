"""Image uploads: real files made with Pillow; bad files refused with a reason."""

from __future__ import annotations

import hashlib
import io
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from catalog.models import IndexState, Product, ProductImage
from catalog.services.products import product_create
from tests.support.images import image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def product():
    return product_create(sku="IMG-1", title="Lamp", price=Decimal("30"))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_upload_real_image(staff_client, product, fmt):
    data = image_bytes(fmt)
    upload = SimpleUploadedFile(f"photo.{fmt.lower()}", data, content_type=f"image/{fmt.lower()}")
    response = staff_client.post(
        f"/api/products/{product.pk}/images/", {"image": upload}, format="multipart"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["width"], body["height"]) == (64, 48)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    stored = ProductImage.objects.get(pk=body["id"])
    assert stored.image.read() == data
    listing = staff_client.get(f"/api/products/{product.pk}/images/").json()
    assert [i["id"] for i in listing] == [body["id"]]


def test_text_file_named_jpg_is_refused(staff_client, product):
    upload = SimpleUploadedFile(
        "photo.jpg", b"this is not an image at all", content_type="image/jpeg"
    )
    response = staff_client.post(
        f"/api/products/{product.pk}/images/", {"image": upload}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["error"] in {"unsupported_format", "corrupt"}
    assert not ProductImage.objects.exists()


def test_decompression_bomb_is_refused(staff_client, product, settings):
    settings.IMAGE_MAX_PIXELS = 1_000_000
    buffer = io.BytesIO()
    Image.new("1", (3000, 3000)).save(buffer, format="PNG")  # tiny file, 9 Mpx
    upload = SimpleUploadedFile("bomb.png", buffer.getvalue(), content_type="image/png")
    response = staff_client.post(
        f"/api/products/{product.pk}/images/", {"image": upload}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "too_many_pixels"


def test_oversize_upload_is_refused(staff_client, product, settings):
    settings.IMAGE_MAX_BYTES = 1000
    upload = SimpleUploadedFile(
        "big.png", image_bytes("PNG", size=(400, 400)), content_type="image/png"
    )
    response = staff_client.post(
        f"/api/products/{product.pk}/images/", {"image": upload}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "too_large"


def test_source_url_is_recorded_and_checked(staff_client, product):
    ok = staff_client.post(
        f"/api/products/{product.pk}/images/",
        {"source_url": "https://images.example.com/lamp.jpg"},
        format="json",
    )
    assert ok.status_code == 201
    assert ok.json()["source_url"] == "https://images.example.com/lamp.jpg"
    bad = staff_client.post(
        f"/api/products/{product.pk}/images/", {"source_url": "file:///etc/passwd"}, format="json"
    )
    assert bad.status_code == 400


def test_neither_or_both_is_400(staff_client, product):
    assert (
        staff_client.post(f"/api/products/{product.pk}/images/", {}, format="json").status_code
        == 400
    )


def test_anonymous_upload_refused(api_client, product):
    upload = SimpleUploadedFile("p.png", image_bytes(), content_type="image/png")
    response = api_client.post(
        f"/api/products/{product.pk}/images/", {"image": upload}, format="multipart"
    )
    assert response.status_code == 401


def test_the_same_bytes_uploaded_twice_are_stored_and_encoded_once(
    staff_client, product, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path  # ids are reused between tests: count this test's files
    data = image_bytes("PNG")
    url = f"/api/products/{product.pk}/images/"

    def send() -> object:
        upload = SimpleUploadedFile("photo.png", data, content_type="image/png")
        return staff_client.post(url, {"image": upload}, format="multipart")

    first = send()
    assert first.status_code == 201, first.content
    Product.objects.filter(pk=product.pk).update(index_state=IndexState.INDEXED)
    again = send()
    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    assert ProductImage.objects.filter(product=product).count() == 1
    stored = tmp_path / "products" / str(product.pk)
    assert len(list(stored.iterdir())) == 1  # no second file
    product.refresh_from_db()
    assert product.index_state == IndexState.INDEXED  # not sent back to encoding
    # Another product may hold the same bytes; a different image is a new one.
    other = product_create(sku="IMG-2", title="Lamp too", price=Decimal("30"))
    upload = SimpleUploadedFile("photo.png", data, content_type="image/png")
    posted = staff_client.post(
        f"/api/products/{other.pk}/images/", {"image": upload}, format="multipart"
    )
    assert posted.status_code == 201
    upload = SimpleUploadedFile("b.png", image_bytes("PNG", colour=(1, 2, 3)), "image/png")
    assert staff_client.post(url, {"image": upload}, format="multipart").status_code == 201


def test_the_database_keeps_one_upload_per_product_and_hash(product):
    """The constraint behind it (URL images are left out: their hash comes later from
    the encoder, and two URLs may serve the same bytes)."""
    from django.db import IntegrityError, transaction

    ProductImage.objects.create(product=product, image="products/a.png", sha256="ab" * 32)
    with pytest.raises(IntegrityError), transaction.atomic():
        ProductImage.objects.create(product=product, image="products/b.png", sha256="ab" * 32)
    for n in range(2):
        ProductImage.objects.create(
            product=product, source_url=f"https://img.example/{n}.png", sha256="cd" * 32
        )
    ProductImage.objects.create(product=product, image="products/c.png")  # hash not known
    ProductImage.objects.create(product=product, image="products/d.png")
