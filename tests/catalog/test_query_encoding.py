"""Query vectors: in-process encoding (small deployments) and the query-embedding cache."""

from __future__ import annotations

import numpy as np
import pytest

from catalog import search
from catalog.errors import ServiceError, ServiceUnavailable
from tests.support.images import image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def in_process(settings, tiny_clip_model, redis_url):
    settings.SEARCH_ENCODE_IN_PROCESS = True
    settings.CLIP_FALLBACK_DIR = tiny_clip_model.parent / "unused-fallback"
    return settings


def test_text_and_image_queries_encode_in_the_web_process(in_process, redis_client):
    first = search.text_vector("red leather boots")
    assert first.dtype == np.float32
    assert first.shape == (64,)
    np.testing.assert_allclose(np.linalg.norm(first), 1.0, rtol=1e-5)
    cached = [k for k in redis_client.keys("search:qemb:tiny-clip*:text:*") if b"stats" not in k]
    assert len(cached) == 1, "the query vector is cached under the model's name"
    again = search.text_vector("red leather boots")
    np.testing.assert_array_equal(first, again)
    shouted = search.text_vector("  Red   LEATHER boots ")  # one cache entry for both...
    np.testing.assert_array_equal(first, shouted)
    from workers.encoding.process import process_encoder

    encoder = process_encoder(in_process.CLIP_MODEL, str(in_process.CLIP_FALLBACK_DIR))
    raw = encoder.encode_texts(["  Red   LEATHER boots "])[0]  # ...because CLIP reads them alike
    np.testing.assert_allclose(raw, first, atol=1e-6)
    counters = {
        k.decode().rsplit(":", 1)[-1]: int(redis_client.get(k))
        for k in redis_client.keys("search:qemb:*:stats:*")
    }
    assert counters == {"hits": 2, "misses": 1}
    photo = search.image_vector(image_bytes("PNG"))
    assert photo.shape == (64,)


def test_unreadable_query_image_is_a_400(in_process):
    with pytest.raises(ServiceError) as caught:
        search.image_vector(b"definitely not an image")
    assert caught.value.status_code == 400
    assert caught.value.code == "unreadable_image"


def test_without_encode_workers_the_rpc_path_is_503(settings, redis_url):
    settings.SEARCH_ENCODE_IN_PROCESS = False
    settings.ENCODE_TIMEOUT_S = 0.3
    with pytest.raises(ServiceUnavailable):
        search.text_vector("anything")
