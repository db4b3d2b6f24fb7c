"""Query encoding over the RPC, and the query-embedding cache in front of it.

The encoder here is `CharHashEncoder`, a small deterministic function (hashed bag of
character trigrams for text, a folded 8x8 thumbnail for images) standing in for the CLIP
encoder, which is built elsewhere: the RPC layer only needs an object with
`encode_texts(list[str])` and `encode_images(list[PIL.Image])`, and these tests check that
what goes through Redis equals what that object computes in-process.
"""

from __future__ import annotations

import hashlib
import io
import threading
from functools import partial

import numpy as np
import pytest
import redis
from PIL import Image

from tests.workers.rpc.conftest import Servers, wait_for
from workers.encoding.images import ImageLimits
from workers.rpc.client import EncodeClient
from workers.rpc.encode import (
    ENCODE_QUEUE_KEY,
    LocalEncoder,
    QueryEmbeddingCache,
    decode_image,
    make_encode_handler,
)
from workers.rpc.errors import BadRequest, NoWorkerAvailable

DIM = 32


class CharHashEncoder:
    """Deterministic text/image -> unit vector; counts its calls to observe batching."""

    model_name = "charhash-32"

    def __init__(self) -> None:
        self.text_calls: list[int] = []
        self.image_calls: list[int] = []

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.text_calls.append(len(texts))
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            padded = f"  {text.lower()} "
            for i in range(len(padded) - 2):
                digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "little") % DIM] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        self.image_calls.append(len(images))
        out = np.zeros((len(images), DIM), dtype=np.float32)
        for row, image in enumerate(images):
            pixels = np.asarray(image.resize((8, 8)), dtype=np.float32).reshape(-1)
            np.add.at(out[row], np.arange(pixels.size) % DIM, pixels / 255.0)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    image = Image.new("RGB", size, color)
    image.paste((255 - color[0], color[1], 0), (5, 5, 20, 15))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def encoder() -> CharHashEncoder:
    return CharHashEncoder()


def test_text_and_image_round_trip(
    servers: Servers, rpc_redis: redis.Redis, encoder: CharHashEncoder
) -> None:
    servers.start(ENCODE_QUEUE_KEY, make_encode_handler(encoder))
    client = EncodeClient(rpc_redis)
    vector = client.encode_text("red leather boots", timeout_s=5)
    assert vector.dtype == np.float32
    assert vector.shape == (DIM,)
    np.testing.assert_array_equal(vector, encoder.encode_texts(["red leather boots"])[0])
    data = png_bytes((200, 30, 60))
    vector = client.encode_image(data, timeout_s=5)
    np.testing.assert_array_equal(vector, encoder.encode_images([decode_image(data)])[0])


def test_queued_texts_are_encoded_in_one_call(
    servers: Servers, rpc_redis: redis.Redis, encoder: CharHashEncoder
) -> None:
    client = EncodeClient(rpc_redis)
    texts = [f"query number {i}" for i in range(6)]
    images = [png_bytes((40 * i, 100, 20)) for i in range(2)]
    results: dict[object, np.ndarray] = {}

    def ask(item: str | bytes) -> None:
        call = client.encode_text if isinstance(item, str) else client.encode_image
        results[item] = call(item, timeout_s=10)

    threads = [threading.Thread(target=ask, args=(item,)) for item in [*texts, *images]]
    for thread in threads:
        thread.start()
    wait_for(lambda: rpc_redis.llen(ENCODE_QUEUE_KEY) == len(threads))
    server = servers.start(ENCODE_QUEUE_KEY, make_encode_handler(encoder))
    for thread in threads:
        thread.join(timeout=15)
    assert encoder.text_calls == [len(texts)]
    assert encoder.image_calls == [len(images)]
    assert server.batch_sizes == {len(threads): 1}
    for text in texts:
        np.testing.assert_array_equal(results[text], encoder.encode_texts([text])[0])


def test_unreadable_images_are_bad_requests_naming_why(
    servers: Servers, rpc_redis: redis.Redis, encoder: CharHashEncoder
) -> None:
    small_cap = partial(decode_image, limits=ImageLimits(max_pixels=2000))
    servers.start(ENCODE_QUEUE_KEY, make_encode_handler(encoder, decode=small_cap))
    client = EncodeClient(rpc_redis)
    with pytest.raises(BadRequest, match="unsupported_format"):
        client.encode_image(b"this is not an image", timeout_s=5)
    with pytest.raises(BadRequest, match=r"truncated|corrupt"):
        client.encode_image(png_bytes((1, 2, 3))[:60], timeout_s=5)  # truncated PNG
    with pytest.raises(BadRequest, match="too_many_pixels"):
        client.encode_image(png_bytes((1, 2, 3), size=(100, 100)), timeout_s=5)
    # The worker is still serving after refusing them.
    assert client.encode_image(png_bytes((9, 9, 9)), timeout_s=5).shape == (DIM,)
    assert encoder.image_calls == [1]


def test_no_encode_worker_raises(rpc_redis: redis.Redis) -> None:
    with pytest.raises(NoWorkerAvailable):
        EncodeClient(rpc_redis).encode_text("boots", timeout_s=0.2)


def test_cache_hits_skip_the_encoder_and_are_counted(
    servers: Servers, rpc_redis: redis.Redis, encoder: CharHashEncoder
) -> None:
    servers.start(ENCODE_QUEUE_KEY, make_encode_handler(encoder))
    cache = QueryEmbeddingCache(rpc_redis, model=encoder.model_name, ttl_s=60)
    client = EncodeClient(rpc_redis, cache=cache)
    first = client.encode_text("blue denim jacket", timeout_s=5)
    second = client.encode_text("blue denim jacket", timeout_s=5)
    np.testing.assert_array_equal(first, second)
    assert encoder.text_calls == [1]
    assert (cache.hits, cache.misses) == (1, 1)
    assert [int(rpc_redis.get(key)) for key in cache.stats_keys] == [1, 1]
    digest = hashlib.sha256(b"blue denim jacket").hexdigest()
    key = f"search:qemb:charhash-32:text:{digest}"
    assert cache.key("text", "blue denim jacket") == key
    assert 0 < rpc_redis.ttl(key) <= 60
    data = png_bytes((10, 200, 10))
    client.encode_image(data, timeout_s=5)
    client.encode_image(data, timeout_s=5)
    assert encoder.image_calls == [1]
    assert (cache.hits, cache.misses) == (2, 2)


def test_cache_never_serves_another_models_vectors(
    servers: Servers, rpc_redis: redis.Redis, encoder: CharHashEncoder
) -> None:
    servers.start(ENCODE_QUEUE_KEY, make_encode_handler(encoder, model="clip-old"))
    cache = QueryEmbeddingCache(rpc_redis, model="clip-new", ttl_s=60)
    client = EncodeClient(rpc_redis, cache=cache)
    client.encode_text("hat", timeout_s=5)
    client.encode_text("hat", timeout_s=5)
    assert encoder.text_calls == [1, 1]
    assert cache.hits == 0


def test_corrupt_cache_entries_are_misses(rpc_redis: redis.Redis) -> None:
    cache = QueryEmbeddingCache(rpc_redis, model="m", ttl_s=60)
    rpc_redis.set(cache.key("text", "x"), b"\x01\x02\x03")  # not a float32 vector
    assert cache.get("text", "x") is None
    assert rpc_redis.exists(cache.key("text", "x")) == 0
    cache.put("text", "x", np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(cache.get("text", "x"), np.arange(4, dtype=np.float32))


def test_local_encoder_matches_the_rpc_and_shares_the_cache(
    rpc_redis: redis.Redis, encoder: CharHashEncoder
) -> None:
    cache = QueryEmbeddingCache(rpc_redis, model=encoder.model_name, ttl_s=60)
    local = LocalEncoder(encoder, cache=cache)
    vector = local.encode_text("green scarf")
    np.testing.assert_array_equal(vector, encoder.encode_texts(["green scarf"])[0])
    local.encode_text("green scarf")
    assert (cache.hits, cache.misses) == (1, 1)
    with pytest.raises(BadRequest, match="image rejected"):
        local.encode_image(b"\x00\x01")
