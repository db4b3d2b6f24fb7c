"""What a build says it did: an exact index is not tuned (no false "target not reached"),
a small source keeps vectors in the index while it is tuned, and every vector ends up in."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tests.workers.index.conftest import DIM
from workers.index.bulk_build import build_bulk
from workers.index.synthetic import clustered_vectors
from workers.index.tune import recall_excluding
from workers.index.types import VectorAttrs


def source(n: int) -> tuple[np.ndarray, np.ndarray, VectorAttrs]:
    ids = np.arange(n, dtype=np.int64) + 1
    attrs = VectorAttrs.build(ids, ids % 3, ids.astype(np.float32), ids % 2 == 0)
    return ids, clustered_vectors(n, DIM, n_clusters=8), attrs


def test_an_exact_index_is_not_tuned_and_holds_every_vector(tmp_path: Path, caplog) -> None:
    """307 vectors used to be held out whole as tuning queries: "added 0 vectors", then a
    warning that recall@10 was 0.000 on an index that is exact by construction."""
    with caplog.at_level(logging.INFO, logger="workers.index"):
        built = build_bulk(iter([source(307)]), DIM, "m", "Flat", work_dir=tmp_path)
    assert built.tune == {
        "params": built.shard.params.to_dict(),
        "k": 10,
        "exact": True,
        "queries": 0,
    }
    assert built.shard.tune_report["exact"] is True
    assert built.n_vectors == 307
    messages = [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], messages
    assert any(m.startswith("Flat: added 307 vectors") for m in messages), messages
    assert any(m.endswith("exact: nothing to tune") for m in messages), messages


@pytest.mark.parametrize("spec", ["IVF4,Flat", "HNSW16"])
def test_a_small_source_is_tuned_on_part_of_it(spec: str, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="workers.index"):
        built = build_bulk(
            iter([source(307)]), DIM, "m", spec, expected_count=307, work_dir=tmp_path
        )
    assert 0 < built.tune["queries"] <= 307 // 2
    assert built.tune["reached"], built.tune
    assert built.n_vectors == 307  # the held-out queries joined after tuning
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_recall_counts_only_the_neighbours_there_are() -> None:
    """A shard of 3 vectors has 3 true neighbours, not 10 (truth is padded with -1)."""
    truth = np.array([[5, 6, 7] + [-1] * 7])
    assert recall_excluding(np.array([[7, 5, 6] + [-1] * 7]), truth, None, 10) == 1.0
    assert recall_excluding(np.array([[5] + [-1] * 9]), truth, None, 10) == pytest.approx(1 / 3)
