"""Query and upload images whose decode or resize would cost too much are refused in the web
process, before any encoder sees them; the byte cap is the documented IMAGE_MAX_BYTES
end to end.

A real encode RPC server (the tiny CLIP, in a thread, counting what it served) and two
real shard servers (empty exact FAISS indexes) answer on the test Redis.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from catalog.models import Product
from tests.support.images import image_bytes
from tests.support.membership import serve_as_ready
from tests.support.servers import serving
from tests.workers.rpc.conftest import FlatShard, Servers
from workers.encoding.encoder import ClipEncoder
from workers.encoding.registry import publish_model
from workers.rpc.connection import connect
from workers.rpc.encode import ENCODE_QUEUE_KEY, make_encode_handler
from workers.rpc.search import make_search_handler, shard_queue_key
from workers.rpc.server import RpcServer

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024


def png_of(size: tuple[int, int], mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height greyscale pixels and carries a few bytes of data:
    a decompression bomb's header (whoever decodes it allocates width x height)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


STRIP = png_of((300_000, 1))  # 0.3 Mpx, under IMAGE_MAX_PIXELS; resized: 67200000x224
REFUSED = {
    "300000x1": (STRIP, "side_too_long", "IMAGE_MAX_SIDE"),
    "1x300000": (png_of((1, 300_000)), "side_too_long", "IMAGE_MAX_SIDE"),
    "6000x200": (png_of((6000, 200)), "aspect_too_extreme", "IMAGE_MAX_ASPECT"),
    "7000x7000 bomb": (png_header_only(7000, 7000), "too_many_pixels", "IMAGE_MAX_PIXELS"),
    "60000x60000 bomb": (png_header_only(60000, 60000), "too_many_pixels", ""),
}


@dataclass
class Site:
    encode: RpcServer
    servers: Servers


@pytest.fixture
def site(settings, redis_url, tiny_clip_model) -> Iterator[Site]:
    """Encode and shard RPC servers for the web process to call; each shard holds one vector
    of a product the database does not have, so every search answers with no hits."""
    settings.SEARCH_ENCODE_IN_PROCESS = False
    settings.SEARCH_SHARDS = 2
    settings.ENCODE_TIMEOUT_S = 30.0  # a liveness bound: the 16 MB query decodes slowly here
    settings.SEARCH_TIMEOUT_S = 5.0
    encoder = ClipEncoder.load(str(tiny_clip_model))
    client = connect(redis_url)
    publish_model(client, encoder.model_name, encoder.dim, random_weights=encoder.random_weights)
    servers = Servers(redis_url)
    encode = servers.start(ENCODE_QUEUE_KEY, make_encode_handler(encoder), name="encoder")
    for shard in range(2):
        vector = np.eye(1, encoder.dim, dtype=np.float32)
        ghost = FlatShard(vector, np.array([10**9 + shard]), np.zeros(1, np.int64))
        servers.start(shard_queue_key(shard), make_search_handler(ghost.search, shard=shard))
        serve_as_ready(client, shard)
    yield Site(encode=encode, servers=servers)
    servers.stop_all()
    client.close()


def search_photo(api_client, data: bytes, name: str = "q.png"):
    upload = SimpleUploadedFile(name, data, "image/png")
    return api_client.post("/api/search/", {"image": upload}, format="multipart")


def served(site: Site, expected: int) -> int:
    """The encoder's count of answered requests, once it has caught up: it counts a reply
    after writing it, so the caller can read the reply first."""
    deadline = time.monotonic() + 5
    while site.encode.served < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return site.encode.served


def test_costly_query_images_are_refused_before_the_encoder(site, api_client):
    assert search_photo(api_client, image_bytes("PNG")).status_code == 200
    assert served(site, 1) == 1

    for label, (data, code, setting) in REFUSED.items():
        response = search_photo(api_client, data)
        assert response.status_code == 400, (label, response.content[:300])
        body = response.json()
        assert body["error"] == code, (label, body)
        reason = body["fields"]["image"][0]
        assert setting in reason, (label, reason)
    assert "longest side is 300000 pixels" in search_photo(api_client, STRIP).json()["detail"]
    assert site.encode.served == 1, "no refused image reached the encoder"

    # Right after, an ordinary photo is searched as usual (nothing is stuck or starved).
    assert search_photo(api_client, image_bytes("PNG", colour=(1, 2, 3))).status_code == 200
    assert served(site, 2) == 2


class _OneImage(BaseHTTPRequestHandler):
    body = STRIP

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


@pytest.fixture
def strip_url() -> Iterator[str]:
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), _OneImage)) as port:
        yield f"http://127.0.0.1:{port}/strip.png"


def test_costly_image_url_is_refused_before_the_encoder(site, api_client, settings, strip_url):
    settings.IMAGE_URL_ALLOW_PRIVATE = True
    response = api_client.post("/api/search/", {"image_url": strip_url}, format="json")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"] == "side_too_long"
    assert "IMAGE_MAX_SIDE" in response.json()["fields"]["image_url"][0]
    assert site.encode.served == 0


@pytest.mark.parametrize("label", sorted(REFUSED))
def test_costly_product_uploads_are_refused(staff_client, label):
    data, code, setting = REFUSED[label]
    product = Product.objects.create(sku=f"S-{len(label)}", title="Strip", price="1.00")
    upload = SimpleUploadedFile("p.png", data, "image/png")
    response = staff_client.post(
        f"/api/products/{product.pk}/images/", {"image": upload}, format="multipart"
    )
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"] == code
    assert setting in response.json()["fields"]["image"][0]
    assert not product.images.exists()


def noise_png(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def test_a_large_valid_photo_under_image_max_bytes_is_searched(site, api_client, settings):
    assert settings.IMAGE_MAX_BYTES == 20 * MIB == 20971520
    photo = noise_png(2400, 2300)
    assert 15 * MIB < len(photo) < 16 * MIB  # over the old 12 MiB RPC cap
    response = search_photo(api_client, photo)
    assert response.status_code == 200, response.content[:300]
    assert served(site, 1) == 1


def test_a_photo_over_image_max_bytes_is_a_400_naming_the_limit(site, api_client):
    too_big = b"\x89PNG\r\n\x1a\n" + bytes(20 * MIB)
    response = search_photo(api_client, too_big)
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["error"] == "too_large"
    assert "20971520 bytes (IMAGE_MAX_BYTES)" in body["fields"]["image"][0]
    assert site.encode.served == 0


def test_a_strip_source_url_fails_in_the_encode_workers_path(
    settings, strip_url, redis_url, tiny_clip_model
):
    """A product image by URL never passes the web checks: the encode worker's own path
    (catalog.services.indexing, the tiny CLIP) refuses it, naming the limit."""
    from catalog.models import IndexState, ProductImage
    from catalog.services import indexing

    settings.IMAGE_URL_ALLOW_PRIVATE = True
    product = Product.objects.create(sku="STRIP-URL", title="Strip", price="1.00")
    image = ProductImage.objects.create(product=product, source_url=strip_url)
    encoder = ClipEncoder.load(str(tiny_clip_model))
    report = indexing.encode_products([product.pk], encoder=encoder)
    assert (report.encoded, report.failed) == (0, 1)
    image.refresh_from_db()
    assert image.error.startswith("side_too_long")
    assert "IMAGE_MAX_SIDE" in image.error
    product.refresh_from_db()
    assert product.index_state == IndexState.FAILED
