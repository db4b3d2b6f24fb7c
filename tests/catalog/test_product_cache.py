"""Product cards and stored vectors cached in Redis: built on a miss, forgotten by every
kind of write, rebuilt when what Redis holds is not a well-formed entry."""

from __future__ import annotations

from decimal import Decimal

import msgpack
import numpy as np
import pytest
import redis
from django.core.files.base import ContentFile
from django.db import connection

from catalog import product_cache
from catalog.api.representation import product_representation
from catalog.card_invalidation import CARD_PREFIX, VECTOR_PREFIX
from catalog.models import Category, Embedding, IndexState, Product, ProductImage
from catalog.services.categories import category_update
from catalog.services.images import image_delete
from catalog.services.products import product_update, products_remove_from_index
from tests.support.images import image_bytes
from workers.redis_process import free_port
from workers.rpc.connection import connect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return connect(redis_url)


def make_product(sku: str, *, images: int = 1, category: Category | None = None) -> Product:
    product = Product.objects.create(
        sku=sku, title=f"Title {sku}", price=Decimal("9.50"), category=category
    )
    for position in range(images):
        image = ProductImage(product=product, position=position)
        image.image.save(f"{sku}-{position}.png", ContentFile(image_bytes("PNG")), save=False)
        image.save()
        Embedding.objects.create(
            image=image,
            model="m",
            dim=4,
            vector=np.full(4, position + 1, dtype="<f4").tobytes(),
            source_sha256="x",
        )
    return product


def sneak_title(product: Product, title: str) -> None:
    """Change a row behind Django's back (no signal, no queryset), as another system might."""
    table = Product._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET title = %s WHERE id = %s", [title, product.pk])  # noqa: S608


def title_of(client: redis.Redis, product: Product) -> str:
    return product_cache.cards(client, [product.pk])[product.pk]["title"]


def test_a_card_is_the_products_representation_and_is_read_from_redis(client):
    product = make_product("C-1", images=2)
    card = product_cache.cards(client, [product.pk])[product.pk]
    assert card == product_representation(product, None, list(product.images.all()))
    assert client.exists(CARD_PREFIX + str(product.pk))
    assert 0 < client.ttl(CARD_PREFIX + str(product.pk)) <= 300

    sneak_title(product, "changed behind the cache")
    assert title_of(client, product) == "Title C-1"  # served from Redis
    client.delete(CARD_PREFIX + str(product.pk))
    assert title_of(client, product) == "changed behind the cache"


def test_inactive_products_and_products_without_images_have_no_card(client):
    shown = make_product("C-2")
    bare = make_product("C-3", images=0)
    hidden = make_product("C-4")
    Product.objects.filter(pk=hidden.pk).update(is_active=False)
    assert set(product_cache.cards(client, [shown.pk, bare.pk, hidden.pk, 10**9])) == {shown.pk}


def as_a_view_reads(client: redis.Redis) -> dict:
    """The replies a search view has from its rate limit's round trip: the epoch token."""
    read = product_cache.epoch_read()
    return {read: client.get(read[1])}


@pytest.mark.parametrize("local", [False, True], ids=["redis", "local-copies"])
def test_every_kind_of_write_forgets_the_card(client, local):
    shoes = Category.objects.create(name="Shoes", slug="shoes")
    product = make_product("C-5", images=2, category=shoes)

    def card() -> dict:
        replies = as_a_view_reads(client) if local else None
        return product_cache.cards(client, [product.pk], replies).get(product.pk, {})

    assert card()["title"] == "Title C-5"
    product_update(product=product, title="Saved")  # save(): a signal
    assert card()["title"] == "Saved"
    assert card()["index_state"] == IndexState.PENDING

    Product.objects.filter(pk=product.pk).update(index_state=IndexState.INDEXED)  # bulk update
    assert card()["index_state"] == IndexState.INDEXED

    ProductImage.objects.filter(product=product).update(error="broken")  # images, in bulk
    assert {image["error"] for image in card()["images"]} == {"broken"}

    category_update(category=shoes, slug="boots")  # the category's products
    assert card()["category"] == "boots"

    first = product.images.order_by("position").first()
    image_delete(image=first)  # an image delete
    assert [image["id"] for image in card()["images"]] == [
        i.pk for i in product.images.order_by("position")
    ]

    assert card()["category"] == "boots"
    Category.objects.filter(pk=shoes.pk).delete()  # its products' category goes null
    assert card()["category"] is None

    products_remove_from_index(product_ids=[product.pk])  # deactivation
    assert card() == {}


def test_local_copies_serve_while_their_token_is_current(client, monkeypatch):
    product = make_product("L-1")
    replies = as_a_view_reads(client)
    assert product_cache.cards(client, [product.pk], replies)[product.pk]["title"] == "Title L-1"

    sneak_title(product, "changed behind both caches")
    client.delete(CARD_PREFIX + str(product.pk))  # no forget: the token stays
    assert product_cache.cards(client, [product.pk], replies)[product.pk]["title"] == "Title L-1"
    assert not client.exists(CARD_PREFIX + str(product.pk))  # Redis was not asked

    client.delete(product_cache.epoch_read()[1])  # Redis lost the token (a restart)
    lost = as_a_view_reads(client)
    assert product_cache.cards(client, [product.pk], lost)[product.pk]["title"] == (
        "changed behind both caches"
    )
    assert client.get(product_cache.epoch_read()[1])  # a new token for the next searches


def test_local_copies_expire(client, monkeypatch):
    product = make_product("L-2")
    replies = as_a_view_reads(client)
    monkeypatch.setattr(product_cache, "LOCAL_LIFE_S", 0.0)
    product_cache.cards(client, [product.pk], replies)
    sneak_title(product, "changed")
    client.delete(CARD_PREFIX + str(product.pk))
    assert product_cache.cards(client, [product.pk], replies)[product.pk]["title"] == "changed"


def test_local_copies_are_bounded(client, monkeypatch):
    monkeypatch.setattr(product_cache, "LOCAL_MAX_CARDS", 2)
    products = [make_product(f"L-B{i}") for i in range(3)]
    replies = as_a_view_reads(client)
    ids = [p.pk for p in products]
    assert set(product_cache.cards(client, ids, replies)) == set(ids)
    assert len(product_cache._local._entries) <= 2


def test_the_stored_vector_is_cached_and_forgotten_when_the_embedding_changes(client):
    product = make_product("V-1", images=2)
    np.testing.assert_array_equal(product_cache.stored_vector(client, product.pk), np.ones(4))
    assert client.exists(VECTOR_PREFIX + str(product.pk))

    first = product.images.order_by("position").first()
    Embedding.objects.filter(image=first).update(vector=np.zeros(4, "<f4").tobytes())
    # a bulk update of embeddings is not seen (none happens in the code base) ...
    np.testing.assert_array_equal(product_cache.stored_vector(client, product.pk), np.ones(4))
    # ... a save is
    embedding = Embedding.objects.get(image=first)
    embedding.vector = np.full(4, 7, "<f4").tobytes()
    embedding.save()
    np.testing.assert_array_equal(product_cache.stored_vector(client, product.pk), np.full(4, 7))

    image_delete(image=first)
    np.testing.assert_array_equal(product_cache.stored_vector(client, product.pk), np.full(4, 2))
    Product.objects.filter(pk=product.pk).update(is_active=False)
    assert product_cache.stored_vector(client, product.pk) is None


def test_a_vector_reply_read_already_is_used_as_the_cache_s(client):
    """`replies` stands for the GET (the similar view reads it with the rate limit)."""
    product = make_product("V-2")
    read = product_cache.vector_read(product.pk)
    given = np.full(4, 3, "<f4").tobytes()
    np.testing.assert_array_equal(
        product_cache.stored_vector(client, product.pk, {read: given}), np.full(4, 3)
    )
    # a miss read that way falls back to the database, and fills the cache
    np.testing.assert_array_equal(
        product_cache.stored_vector(client, product.pk, {read: None}), np.ones(4)
    )
    assert client.get(read[1]) == np.ones(4, "<f4").tobytes()


@pytest.mark.parametrize(
    "stored",
    [
        lambda pk: b"not msgpack \xc1",
        lambda pk: msgpack.packb([1, 2, 3]),
        lambda pk: msgpack.packb({"id": pk + 1, "images": [{"id": 1, "url": None}]}),  # another's
        lambda pk: msgpack.packb({"id": pk, "images": []}),
        lambda pk: msgpack.packb({"id": pk, "images": [{"id": "1", "url": "/x"}]}),
        lambda pk: msgpack.packb({"id": pk, "images": [{"id": 1, "url": 5}]}),
        lambda pk: msgpack.packb({"id": pk, "images": [{"id": 1}]}),
        lambda pk: b"\x00" * (2 << 20),
    ],
)
def test_a_malformed_card_in_redis_is_rebuilt(client, stored):
    product = make_product("M-1")
    key = CARD_PREFIX + str(product.pk)
    client.set(key, stored(product.pk))
    card = product_cache.cards(client, [product.pk])[product.pk]
    assert card["sku"] == "M-1"
    assert msgpack.unpackb(client.get(key))["sku"] == "M-1"


@pytest.mark.parametrize("stored", [b"abc", b"", np.array([np.nan] * 4, "<f4").tobytes()])
def test_a_malformed_vector_in_redis_is_read_from_the_database(client, stored):
    product = make_product("M-2")
    client.set(VECTOR_PREFIX + str(product.pk), stored)
    np.testing.assert_array_equal(product_cache.stored_vector(client, product.pk), np.ones(4))


def test_without_redis_cards_and_vectors_come_from_the_database(db):
    product = make_product("R-1")
    gone = connect(f"redis://127.0.0.1:{free_port()}/0")
    assert product_cache.cards(gone, [product.pk])[product.pk]["sku"] == "R-1"
    np.testing.assert_array_equal(product_cache.stored_vector(gone, product.pk), np.ones(4))
