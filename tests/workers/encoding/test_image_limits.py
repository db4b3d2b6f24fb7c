"""Caps on what decoding an image and resizing it to the model's input may cost.

A 300000x1 PNG is 370 bytes and 0.3 Mpx, under the pixel cap, but CLIP's processor scales
its shortest side to 224: 67200000x224. The loader refuses such images from the header,
and the encoder refuses them again whatever path they came by (defence in depth).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from tests.support.servers import serving
from workers.encoding.encoder import ClipEncoder
from workers.encoding.images import (
    ImageLimits,
    ImageRejected,
    UrlPolicy,
    check_image_header,
    fetch_image_url,
    load_image_bytes,
)
from workers.encoding.pipeline import EncodedItem, FailedItem

from .conftest import image_bytes


def png_of(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size).save(buffer, format="PNG")
    return buffer.getvalue()


STRIP = png_of((300_000, 1))


def _refused(data: bytes, limits: ImageLimits | None = None) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        load_image_bytes(data, limits=limits)
    with pytest.raises(ImageRejected) as header_only:
        check_image_header(data, limits=limits)
    assert header_only.value.reason_code == caught.value.reason_code
    return caught.value


def test_defaults_are_the_documented_ones() -> None:
    limits = ImageLimits()
    assert (limits.max_bytes, limits.max_pixels) == (20 * 1024 * 1024, 40_000_000)
    assert (limits.max_side, limits.max_aspect) == (12_000, 20.0)
    assert (limits.max_resized_pixels, limits.input_side) == (2_000_000, 224)


def test_a_long_strip_is_refused_by_its_longest_side() -> None:
    assert len(STRIP) < 1000
    assert ImageLimits().max_pixels > 300_000
    for data, size in ((STRIP, "300000x1"), (png_of((1, 300_000)), "1x300000")):
        refused = _refused(data)
        assert refused.reason_code == "side_too_long"
        assert refused.message.startswith(size)
        assert "the limit is 12000 (IMAGE_MAX_SIDE)" in refused.message
        assert not refused.transient


def test_an_extreme_aspect_ratio_is_refused() -> None:
    refused = _refused(png_of((6000, 200)))
    assert refused.reason_code == "aspect_too_extreme"
    assert "30.0:1" in refused.message
    assert "IMAGE_MAX_ASPECT" in refused.message
    assert load_image_bytes(png_of((4000, 200))).width == 4000  # 20:1 is allowed


def test_the_size_after_the_models_resize_is_capped() -> None:
    limits = ImageLimits(max_aspect=1000, max_resized_pixels=224 * 224 * 10)
    refused = _refused(png_of((1100, 100)), limits)  # 2464x224 after the resize
    assert refused.reason_code == "resized_too_large"
    assert "2464x224" in refused.message
    assert "IMAGE_MAX_RESIZED_PIXELS" in refused.message
    assert load_image_bytes(png_of((1000, 100)), limits=limits).width == 1000


def test_the_header_check_never_decodes() -> None:
    header = check_image_header(image_bytes("PNG", (640, 480)))
    assert (header.format, header.width, header.height) == ("PNG", 640, 480)
    cut = image_bytes("PNG", (640, 480))[:80]  # the header is whole, the data is not
    assert check_image_header(cut).width == 640
    with pytest.raises(ImageRejected) as caught:
        load_image_bytes(cut)
    assert caught.value.reason_code == "truncated"


def test_the_encoder_refuses_a_decoded_strip_whatever_its_path(encoder: ClipEncoder) -> None:
    """No loader involved: a decoded image handed straight to the encoder."""
    with pytest.raises(ImageRejected) as caught:
        encoder.preprocess([Image.new("RGB", (64, 48)), Image.new("RGB", (13_000, 1))])
    assert caught.value.reason_code == "side_too_long"
    assert encoder.preprocess([Image.new("RGB", (600, 30))]).shape[0] == 1


def test_the_encoder_checks_its_own_models_input_size(encoder: ClipEncoder) -> None:
    """The tiny CLIP resizes to 32, not 224: the resized cap is applied with 32."""
    limits = ImageLimits(max_aspect=1000, max_resized_pixels=32 * 32 * 50)
    encoder = ClipEncoder(
        encoder.model,
        encoder.image_processor,
        encoder.tokenizer,
        placement=encoder.placement,
        model_name=encoder.model_name,
        limits=limits,
    )
    assert encoder.limits.input_side == 32
    encoder.preprocess([Image.new("RGB", (500, 10))])  # 1600x32: allowed
    with pytest.raises(ImageRejected) as caught:
        encoder.preprocess([Image.new("RGB", (600, 10))])  # 1920x32
    assert caught.value.reason_code == "resized_too_large"


class _Images(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = STRIP if self.path == "/strip.png" else image_bytes("PNG", (40, 30))
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def base_url() -> Iterator[str]:
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), _Images)) as port:
        yield f"http://127.0.0.1:{port}"


def test_a_strip_fetched_by_url_in_the_encoder_fails_only_its_item(
    encoder: ClipEncoder, base_url: str
) -> None:
    """The encode worker's path for a product's source_url: fetch, load, preprocess."""
    policy = UrlPolicy(allow_private=True, connect_timeout=2, read_timeout=2, total_timeout=10)
    urls = [f"{base_url}/ok.png", f"{base_url}/strip.png", f"{base_url}/ok.png"]
    results = list(
        encoder.encode_image_sources(urls, lambda url: fetch_image_url(url, policy=policy))
    )
    assert [type(r) for r in results] == [EncodedItem, FailedItem, EncodedItem]
    failed = results[1]
    assert isinstance(failed, FailedItem)
    assert failed.reason_code == "side_too_long"
    assert "IMAGE_MAX_SIDE" in failed.message


def test_preprocess_refusals_keep_their_reason_in_the_pipeline(encoder: ClipEncoder) -> None:
    """A loader that hands over a decoded strip (no header check): the encoder's own check."""
    sources = [Image.new("RGB", (64, 48)), Image.new("RGB", (1, 13_000))]
    results = list(encoder.encode_image_sources(sources, lambda image: image))
    assert isinstance(results[0], EncodedItem)
    assert isinstance(results[1], FailedItem)
    assert results[1].reason_code == "side_too_long"
