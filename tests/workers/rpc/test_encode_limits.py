"""The encode RPC under the image limits: one byte cap (IMAGE_MAX_BYTES) on both sides of
the protocol, and the encoder's own refusal of images too costly to resize, whoever sent
them (the web process checks first; this is the second line)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import redis
from PIL import Image

from tests.workers.rpc.conftest import Servers, wait_for
from workers.config import WorkerConfig
from workers.encoding.encoder import ClipEncoder
from workers.encoding.images import ImageLimits
from workers.encoding.tiny_clip import build_tiny_clip
from workers.rpc.client import EncodeClient
from workers.rpc.encode import ENCODE_QUEUE_KEY, make_encode_handler
from workers.rpc.errors import BadRequest
from workers.rpc.protocol import (
    DEFAULT_LIMITS,
    ImageQuery,
    ProtocolLimits,
    Request,
    decode_request,
    encode_request,
)

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> ClipEncoder:
    return ClipEncoder.load(str(build_tiny_clip(tmp_path_factory.mktemp("clip") / "m", seed=0)))


def png(size: tuple[int, int], mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_protocol_image_cap_is_image_max_bytes() -> None:
    assert DEFAULT_LIMITS.max_image_bytes == ImageLimits().max_bytes == 20 * MIB
    assert DEFAULT_LIMITS.max_message_bytes > DEFAULT_LIMITS.max_image_bytes
    big = bytes(16 * MIB)  # over the old 12 MiB RPC cap and the old 16 MiB message cap
    raw = encode_request(Request("r1", "search:rpc:reply:r1", 1e10, ImageQuery(big)))
    assert decode_request(raw).payload == ImageQuery(big)


def test_the_protocol_follows_image_max_bytes_from_the_environment() -> None:
    limits = WorkerConfig.from_env({"IMAGE_MAX_BYTES": str(30 * MIB)}).protocol
    assert limits.max_image_bytes == 30 * MIB
    assert limits.max_message_bytes >= 30 * MIB
    with pytest.raises(ValueError, match="IMAGE_MAX_BYTES"):
        ProtocolLimits(max_image_bytes=30 * MIB, max_message_bytes=16 * MIB)


def test_a_large_valid_image_is_encoded_over_the_rpc(
    servers: Servers, rpc_redis: redis.Redis, clip: ClipEncoder
) -> None:
    servers.start(ENCODE_QUEUE_KEY, make_encode_handler(clip))
    pixels = np.random.default_rng(1).integers(0, 256, (2300, 2400, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    photo = buffer.getvalue()
    assert 15 * MIB < len(photo) < 16 * MIB
    vector = EncodeClient(rpc_redis, timeout_s=30).encode_image(photo)
    assert vector.shape == (clip.dim,)
    with pytest.raises(ValueError, match=r"1 to 20971520 bytes \(IMAGE_MAX_BYTES\)"):
        EncodeClient(rpc_redis, timeout_s=30).encode_image(bytes(20 * MIB + 1))


def test_the_encode_worker_refuses_a_strip_sent_straight_to_it(
    servers: Servers, rpc_redis: redis.Redis, clip: ClipEncoder
) -> None:
    server = servers.start(ENCODE_QUEUE_KEY, make_encode_handler(clip))
    client = EncodeClient(rpc_redis, timeout_s=30)
    for size in ((300_000, 1), (1, 300_000)):
        with pytest.raises(BadRequest, match=r"side_too_long.*IMAGE_MAX_SIDE"):
            client.encode_image(png(size))
    with pytest.raises(BadRequest, match=r"aspect_too_extreme"):
        client.encode_image(png((6000, 200)))
    # The worker stays healthy for the next query.
    assert client.encode_image(png((64, 48), "RGB")).shape == (clip.dim,)
    wait_for(lambda: server.served == 4)  # counted just after the reply is pushed
