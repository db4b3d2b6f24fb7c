"""A shard of an n-shard catalog is tuned for the recall the merged answer sees: a hit at
local rank j counts the chance that the merged top k reaches that deep into this shard."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from workers.index.bulk_build import build_bulk
from workers.index.log import shard_for_product
from workers.index.shard import Shard
from workers.index.synthetic import ClusterModel, exact_knn
from workers.index.topk import recall_at_k
from workers.index.tune import (
    autotune,
    merged_rank_weights,
    query_hits,
    recall_excluding,
    recall_spread,
)
from workers.index.types import VectorAttrs

DIM, N, K, TARGET = 64, 16_000, 10, 0.95


def test_rank_weights_are_the_chance_the_merged_top_k_reaches_the_rank() -> None:
    assert np.array_equal(merged_rank_weights(K, 1), np.ones(K))
    for n_shards in (2, 3, 4):
        p = 1 / n_shards
        direct = [
            sum(math.comb(K, m) * p**m * (1 - p) ** (K - m) for m in range(j, K + 1))
            for j in range(1, K + 1)
        ]
        weights = merged_rank_weights(K, n_shards)
        assert weights == pytest.approx(direct, rel=1e-9)
        assert weights.sum() == pytest.approx(K / n_shards)  # E[M]
        assert np.all(np.diff(weights) < 0)
    deep = merged_rank_weights(1000, 4)  # no overflow that deep
    assert deep.sum() == pytest.approx(250)
    assert deep[0] == pytest.approx(1.0)
    assert deep[400] < 1e-12


def test_one_shard_is_plain_recall_at_k() -> None:
    rng = np.random.default_rng(0)
    truth = np.stack([rng.permutation(40)[:K] for _ in range(50)])
    found = np.stack([rng.permutation(40)[:K] for _ in range(50)])
    hits, expected = query_hits(found, truth, None, K, n_shards=1)
    counted = [np.intersect1d(f, t).size for f, t in zip(found, truth, strict=True)]
    assert np.array_equal(hits, counted)
    assert np.all(expected == K)
    assert recall_excluding(found, truth, None, K) == pytest.approx(recall_at_k(found, truth, K))


def test_two_shards_count_the_top_local_neighbours_more() -> None:
    truth = np.arange(K)[None, :]
    top_half = np.array([[0, 1, 2, 3, 4, 90, 91, 92, 93, 94]])  # misses local ranks 6-10
    deep_half = np.array([[5, 6, 7, 8, 9, 90, 91, 92, 93, 94]])  # misses local ranks 1-5
    for found in (top_half, deep_half):
        assert recall_excluding(found, truth, None, K, n_shards=1) == 0.5
    weights = merged_rank_weights(K, 2)
    top = recall_excluding(top_half, truth, None, K, n_shards=2)
    assert top == pytest.approx(weights[:5].sum() / weights.sum())
    assert top > 0.85  # E[min(M, 5)] / E[M]
    assert recall_excluding(deep_half, truth, None, K, n_shards=2) < 0.15
    # a query's own id leaves the truth first: the next neighbour is local rank 1
    own = np.array([0])
    shifted = recall_excluding(top_half, np.arange(K + 1)[None, :], own, K, n_shards=2)
    assert shifted == pytest.approx(weights[:4].sum() / weights.sum())


def test_the_spread_is_the_standard_error_of_per_query_weighted_recall() -> None:
    truth = np.tile(np.arange(K), (6, 1))
    found = np.stack(
        [np.where(np.arange(K) < hit, np.arange(K), -1) for hit in (3, 5, 10, 4, 2, 7)]
    )
    hits, expected = query_hits(found, truth, None, K, n_shards=2)
    per_query = hits / expected
    assert recall_spread(hits, expected) == pytest.approx(per_query.std(ddof=1) / np.sqrt(6))


def two_shards(spec: str, tmp_path: Path):
    """A clustered catalog placed over two shards by product hash, each built and tuned
    (as a build worker does) for the merged answer of two."""
    model = ClusterModel.make(DIM, 200, rank=32, noise=1.0, seed=7)
    vectors = model.sample(N, np.random.default_rng(1))
    ids = np.arange(1, N + 1, dtype=np.int64)
    placed = np.array([shard_for_product(int(i), 2) for i in ids])
    shards: list[tuple[Shard, np.ndarray]] = []
    for n in range(2):
        rows = np.flatnonzero(placed == n)
        mine = ids[rows]
        attrs = VectorAttrs.build(mine, mine % 10, (mine % 50).astype(np.float32), mine % 2 == 0)
        built = build_bulk(
            [(mine, vectors[rows], attrs)],
            DIM,
            "m",
            spec,
            work_dir=tmp_path / f"shard-{n}",
            tune_queries=300,
            n_shards=2,
        )
        shards.append((built.shard, rows))
    return model, vectors, ids, shards


def merged_top_k(shards: list[Shard], queries: np.ndarray) -> np.ndarray:
    """The k best image ids over all shards, as the RPC client merges shard answers."""
    answers = [shard.search_images(queries, K, shard.params) for shard in shards]
    scores = np.concatenate([s for s, _ in answers], axis=1)
    found = np.concatenate([f for _, f in answers], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    return np.take_along_axis(found, order, axis=1)


# a graph search reaches a shard's best local neighbours well before its 10th: tuned for
# the merge of two it stops earlier; an IVF probe finds near and far ones in the same lists
@pytest.mark.parametrize(
    ("spec", "knob", "shallower"), [("HNSW16", "ef_search", True), ("IVF64,Flat", "nprobe", False)]
)
def test_shards_tuned_for_two_reach_the_target_merged(
    spec: str, knob: str, shallower: bool, tmp_path: Path
) -> None:
    model, vectors, ids, shards = two_shards(spec, tmp_path)
    for shard, _ in shards:
        assert shard.tune_report["n_shards"] == 2
        assert shard.tune_report["reached"]

    # fresh queries, the merged answer against the whole catalog's exact neighbours
    queries = model.sample(600, np.random.default_rng(2))
    truth = ids[exact_knn(vectors, queries, K)[1]]
    merged = merged_top_k([shard for shard, _ in shards], queries)
    per_query = np.array(
        [np.intersect1d(m, t).size / K for m, t in zip(merged, truth, strict=True)]
    )
    spread = per_query.std(ddof=1) / np.sqrt(len(per_query))
    assert per_query.mean() >= TARGET - 3 * spread, (per_query.mean(), spread)

    # on the same held-out queries, tuning for two shards never searches deeper than for one
    held_out = model.sample(400, np.random.default_rng(3))
    chosen: dict[int, list[int]] = {1: [], 2: []}
    for shard, rows in shards:
        local_truth = ids[rows][exact_knn(vectors[rows], held_out, K)[1]]
        for n_shards in (1, 2):
            report = autotune(shard, held_out, local_truth, target=TARGET, n_shards=n_shards)
            assert report["n_shards"] == n_shards
            assert report["reached"]
            chosen[n_shards].append(int(report["params"][knob]))  # type: ignore[index]
    assert all(two <= one for one, two in zip(chosen[1], chosen[2], strict=True)), chosen
    if shallower:
        assert sum(chosen[2]) < sum(chosen[1]), chosen
