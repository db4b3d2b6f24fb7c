"""catalog.services.indexing in-process: the real encoder (tiny CLIP), real files, real URLs."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from decimal import Decimal

import numpy as np
import pytest
from django.core.files.base import ContentFile
from PIL import Image

from catalog.card_invalidation import CARD_PREFIX
from catalog.models import Embedding, IndexState, Product, ProductImage
from catalog.services import indexing
from tests.support.images import image_bytes
from workers.encoding.encoder import ClipEncoder
from workers.index.log import UpdateLog, shard_for_product

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def encoder(tiny_clip_model) -> ClipEncoder:
    return ClipEncoder.load(str(tiny_clip_model), batch_size=4)


@pytest.fixture
def product(redis_url) -> Product:
    return Product.objects.create(sku="P-1", title="Thing", price=Decimal("5"))


def stored_image(product: Product, name: str, data: bytes, **fields) -> ProductImage:
    """An image file that is already in storage, as if it had changed on disk since upload."""
    image = ProductImage(product=product, sha256=fields.pop("sha256", ""), **fields)
    image.image.save(name, ContentFile(data), save=True)
    return image


def bomb_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buffer, format="PNG")  # a few KB, 144 Mpx
    return buffer.getvalue()


@pytest.fixture
def http_server() -> Iterator[str]:
    """A local HTTP server with one PNG and one endpoint that never answers in time."""
    payload = image_bytes("PNG", colour=(30, 160, 60))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/slow.png":
                threading.Event().wait(3)
            try:
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except BrokenPipeError:
                pass  # the slow endpoint's client gave up, as it should

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_bad_files_are_refused_with_reasons_and_do_not_block_the_batch(
    encoder, product, redis_client
):
    good = stored_image(product, "good.png", image_bytes("PNG"))
    bomb = stored_image(product, "bomb.png", bomb_png())
    truncated = stored_image(product, "cut.jpg", image_bytes("JPEG", size=(200, 200))[:400])
    text = stored_image(product, "notes.jpg", b"just some text, not a JPEG")

    report = indexing.encode_products([product.pk], encoder=encoder)

    assert report.encoded == 1
    assert report.failed == 3
    reasons = {i.pk: i.error for i in ProductImage.objects.filter(product=product)}
    assert reasons[good.pk] == ""
    assert reasons[bomb.pk].startswith("too_many_pixels")
    assert reasons[truncated.pk].startswith(("truncated", "corrupt"))
    assert reasons[text.pk].startswith(("unsupported_format", "corrupt"))
    product.refresh_from_db()
    assert product.index_state == IndexState.INDEXED
    assert "too_many_pixels" in product.index_error or "pixels" in product.index_error

    log = UpdateLog(redis_client, shard_for_product(product.pk, 2), model="", dim=0)
    published = np.concatenate([e.ids for e in log.read("0-0", count=100, block_ms=None)])
    assert published.tolist() == [good.pk]


def test_unchanged_images_are_not_encoded_again(encoder, product):
    stored_image(product, "a.png", image_bytes("PNG"))
    first = indexing.encode_products([product.pk], encoder=encoder)
    second = indexing.encode_products([product.pk], encoder=encoder)
    assert (first.encoded, first.reused) == (1, 0)
    assert (second.encoded, second.reused) == (0, 1)
    assert second.published == 1


def test_a_task_sent_twice_leaves_an_indexed_product_alone(encoder, product, redis_client):
    """Nothing to encode: no trip through `encoding`, its state's time and card kept."""
    stored_image(product, "a.png", image_bytes("PNG"))
    indexing.encode_products([product.pk], encoder=encoder)
    indexed = Product.objects.get(pk=product.pk)
    assert indexed.index_state == IndexState.INDEXED
    card_key = CARD_PREFIX + str(product.pk)
    redis_client.set(card_key, b"cached card")

    again = indexing.encode_products([product.pk], encoder=encoder)

    after = Product.objects.get(pk=product.pk)
    assert (again.reused, again.published) == (1, 1)
    assert (after.index_state, after.index_state_at) == (
        IndexState.INDEXED,
        indexed.index_state_at,
    )
    assert redis_client.get(card_key) == b"cached card"


def test_an_indexed_product_with_a_new_image_goes_through_encoding(encoder, product):
    stored_image(product, "a.png", image_bytes("PNG"))
    indexing.encode_products([product.pk], encoder=encoder)
    before = Product.objects.get(pk=product.pk).index_state_at
    stored_image(product, "b.png", image_bytes("PNG", colour=(200, 10, 10)))

    report = indexing.encode_products([product.pk], encoder=encoder)

    after = Product.objects.get(pk=product.pk)
    assert (report.encoded, report.reused, report.published) == (1, 1, 2)
    assert after.index_state == IndexState.INDEXED
    assert after.index_state_at > before


def test_private_url_is_refused(encoder, product, http_server, settings):
    settings.IMAGE_URL_ALLOW_PRIVATE = False
    image = ProductImage.objects.create(product=product, source_url=f"{http_server}/a.png")
    indexing.encode_products([product.pk], encoder=encoder)
    image.refresh_from_db()
    assert image.error.startswith("private_address")
    product.refresh_from_db()
    assert product.index_state == IndexState.FAILED


def test_url_from_an_allowed_local_server_is_encoded(encoder, product, http_server, settings):
    settings.IMAGE_URL_ALLOW_PRIVATE = True
    image = ProductImage.objects.create(product=product, source_url=f"{http_server}/a.png")
    report = indexing.encode_products([product.pk], encoder=encoder)
    assert report.encoded == 1
    image.refresh_from_db()
    assert len(image.sha256) == 64
    assert (image.width, image.height) == (64, 48)
    assert Embedding.objects.filter(image=image, model=encoder.model_name).exists()
    product.refresh_from_db()
    assert product.index_state == IndexState.INDEXED


def test_timeout_is_transient_and_keeps_the_product_pending(
    encoder, product, http_server, settings
):
    settings.IMAGE_URL_ALLOW_PRIVATE = True
    settings.IMAGE_URL_READ_TIMEOUT = 0.3
    ProductImage.objects.create(product=product, source_url=f"{http_server}/slow.png")
    with pytest.raises(indexing.TransientEncodeError):
        indexing.encode_products([product.pk], encoder=encoder)
    product.refresh_from_db()
    assert product.index_state == IndexState.PENDING


def test_pending_backlog_joins_the_batch(encoder, redis_url):
    products = [
        Product.objects.create(sku=f"B-{i}", title="b", price=Decimal("1")) for i in range(5)
    ]
    for i, p in enumerate(products):
        stored_image(p, f"{i}.png", image_bytes("PNG", colour=(i * 40, 20, 20)))
    report = indexing.encode_products([products[0].pk], encoder=encoder, batch_products=10)
    assert report.products == 5
    assert set(Product.objects.values_list("index_state", flat=True)) == {IndexState.INDEXED}


def test_a_young_image_whose_file_is_not_stored_yet_is_retried(encoder, product, settings):
    stored_image(product, "keep.png", image_bytes("PNG", colour=(9, 9, 9)))  # the root holds files
    image = stored_image(product, "late.png", image_bytes("PNG"))
    image.image.storage.delete(image.image.name)  # uploaded, not replicated here yet
    settings.MEDIA_MISSING_AFTER_S = 600
    with pytest.raises(indexing.TransientEncodeError, match="not in storage yet"):
        indexing.encode_products([product.pk], encoder=encoder)
    image.refresh_from_db()
    assert image.error == ""
    product.refresh_from_db()
    assert product.index_state == IndexState.PENDING
    assert "not in storage yet" in product.index_error


def test_an_old_image_whose_file_is_gone_is_missing_for_good(encoder, product, settings):
    stored_image(product, "keep.png", image_bytes("PNG", colour=(9, 9, 9)))
    image = stored_image(product, "gone.png", image_bytes("PNG"))
    image.image.storage.delete(image.image.name)
    settings.MEDIA_MISSING_AFTER_S = 0
    report = indexing.encode_products([product.pk], encoder=encoder)
    assert (report.encoded, report.failed) == (1, 1)
    image.refresh_from_db()
    assert image.error.startswith("missing_file: ")
    product.refresh_from_db()
    assert product.index_state == IndexState.INDEXED  # its other image is searchable


def test_an_unmounted_media_volume_is_retried_not_missing(encoder, product, settings, tmp_path):
    image = stored_image(product, "a.png", image_bytes("PNG"))
    settings.MEDIA_MISSING_AFTER_S = 0
    settings.MEDIA_ROOT = tmp_path / "not-mounted"  # this host has no media volume
    with pytest.raises(indexing.TransientEncodeError, match="root is not there"):
        indexing.encode_products([product.pk], encoder=encoder)
    image.refresh_from_db()
    assert image.error == ""
    product.refresh_from_db()
    assert product.index_state == IndexState.PENDING
