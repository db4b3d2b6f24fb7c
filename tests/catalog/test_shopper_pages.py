"""The shopper's HTML pages through Django's test client (the browser test drives them live)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.model_in_use import RANDOM_WEIGHTS_WARNING
from catalog.models import Category
from catalog.services.images import image_add_upload
from catalog.services.products import product_create, product_update
from tests.support.images import image_bytes
from workers.encoding.registry import publish_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def product(redis_url):
    category = Category.objects.create(name="Mugs", slug="mugs")
    made = product_create(
        sku="MUG-1",
        title="Blue polka-dot mug",
        description="A blue mug with tone-on-tone blue dots.",
        brand="Orbit",
        price=Decimal("12.50"),
        category=category,
        attributes={"colour": "blue", "pattern": "polka-dot"},
    )
    upload = SimpleUploadedFile("mug.png", image_bytes("PNG", colour=(35, 85, 200)), "image/png")
    image_add_upload(product=made, upload=upload)
    return made


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_user("clerk", password="pw-clerk-123", is_staff=True)
    client.force_login(user)
    return client


def test_product_page_shows_what_a_shopper_needs(client, product):
    page = client.get(f"/products/{product.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    for text in (
        "<h1>Blue polka-dot mug</h1>",
        "12.50 USD",
        '<dd class="brand">Orbit</dd>',
        '<dd class="category">Mugs</dd>',
        "In stock",
        "A blue mug with tone-on-tone blue dots.",
        "<dt>Colour</dt><dd>blue</dd>",
        f'href="/?similar={product.pk}"',
    ):
        assert text in html, text
    assert f'src="/media/products/{product.pk}/' in html
    # Nothing is encoded here: the page says so in words, it does not fail.
    assert "Similar products are not available right now." in html
    assert "index_state" not in html
    assert "score" not in html


def test_unpublished_or_unknown_products_are_404_except_unpublished_to_staff(client, product):
    product_update(product=product, is_active=False)
    assert client.get(f"/products/{product.pk}/").status_code == 404
    assert client.get("/products/999999/").status_code == 404
    assert client.get(f"/products/{2**70}/").status_code == 404  # past any database integer
    client.force_login(
        type(product)
        .objects.model._meta.apps.get_model("auth", "User")
        .objects.create_user("boss", password="pw-boss-123", is_staff=True)
    )
    page = client.get(f"/products/{product.pk}/").content.decode()
    assert "this product is unpublished" in page


def test_admin_and_flower_links_only_for_staff(client, staff, product, settings):
    settings.FLOWER_URL = "http://flower.example/"
    for path in ("/", f"/products/{product.pk}/"):
        html = staff.get(path).content.decode()
        assert 'id="admin-link"' in html
        assert 'href="http://flower.example/"' in html
    staff.logout()
    for path in ("/", f"/products/{product.pk}/"):
        html = client.get(path).content.decode()
        assert 'id="admin-link"' not in html
        assert "flower.example" not in html
        assert "Edit in the admin" not in html


def test_pages_name_the_model_and_warn_about_random_weights(client, product, redis_client):
    html = client.get("/").content.decode()
    assert 'id="model-warning"' not in html
    assert "not loaded by a search worker yet" in html
    publish_model(redis_client, "tiny-clip-d64-i32-s0", 64, random_weights=True)
    for path in ("/", f"/products/{product.pk}/"):
        html = client.get(path).content.decode()
        assert "Search model: <code>tiny-clip-d64-i32-s0</code>" in html
        assert 'id="model-warning"' in html
        assert RANDOM_WEIGHTS_WARNING in html
    publish_model(redis_client, "openai/clip-vit-base-patch32", 512, random_weights=False)
    html = client.get("/").content.decode()
    assert "Search model: <code>openai/clip-vit-base-patch32</code>" in html
    assert 'id="model-warning"' not in html


def test_back_link_returns_to_the_search_the_shopper_came_from(client, product):
    path = f"/products/{product.pk}/"
    came_from = "http://testserver/?q=blue+mug&max_price=20"
    html = client.get(path, HTTP_REFERER=came_from).content.decode()
    assert 'id="back" href="http://testserver/?q=blue+mug&amp;max_price=20"' in html
    for elsewhere in ("https://evil.example/?q=x", "http://testserver/admin/"):
        html = client.get(path, HTTP_REFERER=elsewhere).content.decode()
        assert 'id="back" href="/"' in html
