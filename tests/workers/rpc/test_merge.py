"""Merging shard answers equals a brute-force top-k over the union of the shards."""

from __future__ import annotations

import numpy as np
import pytest

from workers.rpc.merge import merge_shard_hits
from workers.rpc.protocol import SearchHits


def _hits(scores: np.ndarray, ids: np.ndarray) -> SearchHits:
    image_ids = np.where(ids >= 0, ids * 10, -1)
    return SearchHits(product_ids=ids, image_ids=image_ids, scores=scores.astype(np.float32))


@pytest.mark.parametrize(("n_shards", "k"), [(1, 5), (2, 10), (4, 3)])
def test_merge_equals_brute_force(n_shards: int, k: int) -> None:
    rng = np.random.default_rng(n_shards)
    nq, per_shard = 7, 50
    scores = rng.standard_normal((nq, n_shards * per_shard)).astype(np.float32)
    ids = np.arange(n_shards * per_shard, dtype=np.int64)
    parts = []
    for s in range(n_shards):
        cols = slice(s * per_shard, (s + 1) * per_shard)
        top = np.argsort(-scores[:, cols], axis=1)[:, :k]
        parts.append(
            _hits(
                np.take_along_axis(scores[:, cols], top, axis=1),
                np.broadcast_to(ids[cols], (nq, per_shard))[np.arange(nq)[:, None], top],
            )
        )
    merged = merge_shard_hits(parts, k)
    expected = np.argsort(-scores, axis=1)[:, :k]
    np.testing.assert_array_equal(merged.product_ids, ids[expected])
    np.testing.assert_array_equal(merged.image_ids, ids[expected] * 10)
    np.testing.assert_allclose(merged.scores, np.take_along_axis(scores, expected, axis=1))


def test_padding_sorts_last_and_short_answers_are_padded() -> None:
    a = _hits(np.array([[0.9, -np.inf]]), np.array([[1, -1]]))
    b = _hits(np.array([[0.5, 0.95]]), np.array([[2, 3]]))
    merged = merge_shard_hits([a, b], 5)
    np.testing.assert_array_equal(merged.product_ids, [[3, 1, 2, -1, -1]])
    np.testing.assert_array_equal(merged.image_ids, [[30, 10, 20, -1, -1]])
    assert merged.scores.dtype == np.float32
    assert np.isneginf(merged.scores[0, 3:]).all()


def test_a_single_unsorted_part_is_still_sorted() -> None:
    part = _hits(np.array([[0.1, 0.7, 0.4]]), np.array([[1, 2, 3]]))
    merged = merge_shard_hits([part], 3)
    np.testing.assert_array_equal(merged.product_ids, [[2, 3, 1]])


def test_a_single_part_with_inconsistent_padding_is_normalised() -> None:
    part = _hits(np.array([[0.9, 0.5, 0.1]]), np.array([[1, -1, 3]]))  # a hit without product
    merged = merge_shard_hits([part], 3)
    np.testing.assert_array_equal(merged.product_ids, [[1, 3, -1]])
    np.testing.assert_array_equal(merged.image_ids, [[10, 30, -1]])
    assert np.isneginf(merged.scores[0, 2])
