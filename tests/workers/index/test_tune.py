"""The tuner picks the cheapest knob that reaches the recall target, not the next power of
two: checked against a scan of every knob value on the same held-out queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workers.index.bulk_build import build_bulk
from workers.index.spec import SearchParams
from workers.index.synthetic import ClusterModel, exact_knn
from workers.index.tune import autotune, measure, recall_spread
from workers.index.types import VectorAttrs

DIM, N, TARGET = 32, 6000, 0.95


def built(spec: str, tmp_path: Path):
    model = ClusterModel.make(DIM, 60, rank=16, seed=7)
    vectors = model.sample(N, np.random.default_rng(1))
    ids = np.arange(1, N + 1, dtype=np.int64)
    attrs = VectorAttrs.build(ids, ids % 10, (ids % 50).astype(np.float32), ids % 2 == 0)
    shard = build_bulk(
        [(ids, vectors, attrs)], DIM, "m", spec, work_dir=tmp_path, tune_queries=200
    ).shard

    def queries(seed: int) -> tuple[np.ndarray, np.ndarray]:
        q = model.sample(400, np.random.default_rng(seed))
        return q, ids[exact_knn(vectors, q, 10)[1]]

    return shard, queries(2), queries(3)


@pytest.mark.parametrize(
    ("spec", "knob", "lowest"), [("IVF64,Flat", "nprobe", 1), ("HNSW16", "ef_search", 10)]
)
def test_the_tuner_picks_the_cheapest_passing_knob(spec, knob, lowest, tmp_path: Path) -> None:
    shard, (tune_q, tune_truth), (fresh_q, fresh_truth) = built(spec, tmp_path)
    report = autotune(shard, tune_q, tune_truth, target=TARGET)
    chosen = int(report["params"][knob])

    # every value of the knob, measured on the same queries with the same rule
    values = range(lowest, 129 if knob == "ef_search" else 65)
    passes = {
        v: m.passes(TARGET, None)
        for v in values
        for m in [measure(shard, tune_q, tune_truth, SearchParams(**{knob: v}))]
    }
    cheapest = min(v for v, ok in passes.items() if ok)
    for_good = min(v for v in values if all(passes[u] for u in values if u >= v))
    assert lowest < cheapest, "the data must not pass at the cheapest setting"
    assert report["reached"]
    assert passes[chosen]
    assert cheapest <= chosen <= for_good + max(1, for_good // 16), (cheapest, chosen, for_good)
    # it bisected below the first passing power of two and said what it tried
    tried = [int(row[knob]) for row in report["sweep"]]
    assert any(v & (v - 1) for v in tried), tried  # a value that is no power of two
    assert report["margin"] == report["recall_spread"] > 0

    # fresh held-out queries agree within the measured spread
    fresh = measure(shard, fresh_q, fresh_truth, shard.params)
    assert fresh.recall >= TARGET - 3 * fresh.spread


def test_recall_spread_is_the_standard_error_of_the_mean() -> None:
    hits = np.array([10, 8, 9, 10, 7, 10], dtype=np.int64)
    expected = np.full(6, 10, dtype=np.int64)
    per_query = hits / 10
    assert recall_spread(hits, expected) == pytest.approx(per_query.std(ddof=1) / np.sqrt(6))
    assert recall_spread(np.full(5, 10), np.full(5, 10)) == 0.0
