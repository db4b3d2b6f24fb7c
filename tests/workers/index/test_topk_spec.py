"""Pure helpers: recall@k, the top-k merge across shards, spec choice, narrow columns."""

from __future__ import annotations

import faiss
import numpy as np

from workers.config import IndexConfig
from workers.index.columns import narrowest_int_dtype
from workers.index.spec import SearchParams, choose_spec
from workers.index.topk import merge_results, merge_topk, recall_at_k
from workers.index.types import SearchResult


def test_merge_topk_equals_sorting_everything() -> None:
    rng = np.random.default_rng(0)
    parts = [
        (rng.standard_normal((5, 7)).astype(np.float32), rng.integers(0, 1000, (5, 7)))
        for _ in range(4)
    ]
    parts[1][1][0, :3] = -1  # padding never wins
    scores, ids = merge_topk([p[0] for p in parts], [p[1] for p in parts], 6)
    all_s = np.concatenate([np.where(p[1] >= 0, p[0], -np.inf) for p in parts], axis=1)
    all_i = np.concatenate([p[1] for p in parts], axis=1)
    order = np.argsort(-all_s, axis=1)[:, :6]
    np.testing.assert_allclose(scores, np.take_along_axis(all_s, order, 1))
    np.testing.assert_array_equal(ids, np.take_along_axis(all_i, order, 1))
    # distances: smaller wins, derived from the metric
    d_scores, _ = merge_topk([p[0] for p in parts], [p[1] for p in parts], 3, faiss.METRIC_L2)
    assert (np.diff(d_scores, axis=1) >= 0).all()


def test_merge_results_keeps_image_with_product() -> None:
    a = SearchResult(np.array([[1, 2]]), np.array([[10, 20]]), np.array([[0.9, 0.5]], np.float32))
    b = SearchResult(
        np.array([[3, -1]]), np.array([[30, -1]]), np.array([[0.7, -np.inf]], np.float32)
    )
    merged = merge_results([a, b], 3)
    assert merged.product_ids.tolist() == [[1, 3, 2]]
    assert merged.image_ids.tolist() == [[10, 30, 20]]


def test_recall_at_k() -> None:
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 3, 9, 9], [5, -1, -1, -1]])
    assert recall_at_k(found, truth, 4) == (2 + 1) / 8


def test_choose_spec_table() -> None:
    sizes = IndexConfig()
    assert choose_spec(sizes.flat_max - 1, 512).factory == "Flat"
    assert choose_spec(sizes.flat_max, 512).factory == "HNSW32"
    assert choose_spec(sizes.hnsw_max - 1, 512).factory == "HNSW32"
    assert choose_spec(sizes.hnsw_max, 512).factory.startswith("IVF")
    ivf = choose_spec(1_000_000, 512)
    assert ivf.factory == "IVF4096,Flat"
    assert not ivf.rerank
    big = choose_spec(sizes.ivfpq_min, 512)
    assert big.factory.startswith("OPQ32,IVF")
    assert big.rerank
    assert choose_spec(10, 512, "hnsw").kind == "hnsw"
    smaller = IndexConfig(flat_max=100, hnsw_max=100, ivfpq_min=1000)
    assert choose_spec(100, 512, "auto", smaller).kind == "ivf"
    assert choose_spec(1000, 512, "auto", smaller).rerank
    custom = choose_spec(10, 512, "IVF256,SQ8")
    assert custom.rerank
    assert custom.nlist == 256


def test_request_params_fill_their_gaps_from_the_tuned_ones() -> None:
    tuned = SearchParams(nprobe=8, rerank_k=200)
    assert SearchParams(nprobe=2).merged_over(tuned) == SearchParams(nprobe=2, rerank_k=200)
    assert SearchParams(rerank_k=50).merged_over(tuned) == SearchParams(nprobe=8, rerank_k=50)
    assert SearchParams().merged_over(tuned) == tuned
    complete = SearchParams(nprobe=2, rerank_k=50)
    assert complete.merged_over(tuned) is complete  # nothing to fill: no new instance
    assert SearchParams(nprobe=2).merged_over(SearchParams(nprobe=8)) == SearchParams(nprobe=2)


def test_narrowest_int_dtype() -> None:
    assert narrowest_int_dtype(np.array([1, -5])) == np.int16
    assert narrowest_int_dtype(np.array([70_000])) == np.int32
    assert narrowest_int_dtype(np.array([2**40])) == np.int64
    assert narrowest_int_dtype(np.array([1]), at_least=np.int32) == np.int32


def test_no_shard_above_ten_thousand_vectors_scans_exactly_by_default() -> None:
    """A 20k shard gets an index with a knob to trade recall for speed; asked, it stays exact."""
    for n in (20_000, 50_000, 200_000):
        assert not choose_spec(n, 384).exact, n
    assert choose_spec(20_000, 384, "flat").exact
