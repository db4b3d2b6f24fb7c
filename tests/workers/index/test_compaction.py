"""Compaction built aside: searches and writes go on while it builds, what they changed
meanwhile is in the state it swaps in, and no search sees a half-applied state."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tests.workers.index.conftest import DIM, attrs_for, random_vectors
from workers.index.shard import Shard
from workers.index.spec import SearchParams

SPECS = ["Flat", "IVF8,Flat", "IVF16_HNSW8,Flat", "IVF8,PQ4x4", "HNSW16", "HNSW16_SQ8"]
EXACT = SearchParams(nprobe=16, ef_search=512, rerank_k=4000)


def _filled(spec: str, tmp_path) -> tuple[Shard, np.ndarray, np.ndarray]:
    shard = Shard(DIM, "clip-test", spec, work_dir=tmp_path)
    ids = np.arange(2000, dtype=np.int64) * 3 + 1
    x = random_vectors(2000, seed=21)
    shard.upsert(ids, x, attrs_for(ids))
    shard.compact()  # trained
    return shard, ids, x


def _own_id_first(shard: Shard, ids: np.ndarray, x: np.ndarray) -> bool:
    """Each stored vector, as a query, finds its own image id first."""
    return bool((shard.search(x, 1, params=EXACT).image_ids[:, 0] == ids).all())


@pytest.mark.parametrize("paused", ["before reading the index", "after building aside"])
@pytest.mark.parametrize("spec", SPECS)
def test_searches_and_writes_go_on_while_a_compaction_builds(
    spec: str, paused: str, tmp_path
) -> None:
    shard, ids, x = _filled(spec, tmp_path)
    shard.delete(ids[:500])  # a quarter removed: every kind drops them (a graph rebuilds)
    fresh_ids = np.arange(90_000, 90_100, dtype=np.int64)
    fresh = random_vectors(100, seed=22)
    shard.upsert(fresh_ids, fresh, attrs_for(fresh_ids))
    untouched, untouched_x = ids[1000:1050], x[1000:1050]

    building, release = threading.Event(), threading.Event()
    backend = shard.state.backend
    build = backend.compacted

    def held(*args, **kwargs):
        built = build(*args, **kwargs) if paused.startswith("after") else None
        building.set()
        assert release.wait(60), "the test never released the build"
        return built or build(*args, **kwargs)

    backend.compacted = held  # type: ignore[method-assign]
    takers: list[str] = []
    write = shard.lock.write

    def counted_write():
        takers.append(threading.current_thread().name)
        return write()

    shard.lock.write = counted_write  # type: ignore[method-assign]
    wrong: list[np.ndarray] = []
    done = threading.Event()

    def search_all_along() -> None:  # before, during and after the swap
        while not done.is_set():
            if not _own_id_first(shard, untouched, untouched_x):
                wrong.append(shard.search(untouched_x, 1, params=EXACT).image_ids[:, 0])

    searcher = threading.Thread(target=search_all_along)
    compactor = threading.Thread(target=shard.compact, name="compaction")
    searcher.start()
    compactor.start()
    try:
        assert building.wait(60)
        # the compaction is building: searches and writes do not wait for it
        assert _own_id_first(shard, ids[600:700], x[600:700])
        shard.delete(ids[600:610])
        moved = random_vectors(10, seed=23)
        shard.upsert(ids[610:620], moved, attrs_for(ids[610:620]))  # superseded meanwhile
        late_ids = np.arange(95_000, 95_020, dtype=np.int64)
        late = random_vectors(20, seed=24)
        shard.upsert(late_ids, late, attrs_for(late_ids))
        assert not np.isin(shard.search(x[600:610], 5, params=EXACT).image_ids, ids[600:610]).any()
    finally:
        release.set()
        compactor.join(120)
        done.set()
        searcher.join(120)
    assert not wrong
    assert takers.count("compaction") == 1  # the write lock, once: to catch up and swap
    assert shard.state.backend is not backend  # a new state was swapped in
    live_ids = np.concatenate([ids[500:600], ids[620:], ids[610:620], fresh_ids, late_ids])
    np.testing.assert_array_equal(shard.ids(), np.sort(live_ids))
    # what changed while it built is in the compacted state
    gone = np.concatenate([ids[:500], ids[600:610]])
    assert not np.isin(shard.search(x[:610], 10, params=EXACT).image_ids, gone).any()
    for found_ids, queries in ((ids[610:620], moved), (fresh_ids, fresh), (late_ids, late)):
        assert _own_id_first(shard, found_ids, queries)
    assert _own_id_first(shard, ids[620:], x[620:])
    assert shard.stats()["removed"] == 20  # the ten deleted and the ten superseded meanwhile


@pytest.mark.parametrize("spec", ["IVF8,Flat", "IVF8,PQ4x4", "HNSW16_SQ8"])
def test_a_compaction_loses_nothing_to_a_snapshot_taken_after_it(spec: str, tmp_path) -> None:
    """The compacted state is a whole state: it snapshots and loads like any other."""
    shard, ids, x = _filled(spec, tmp_path / "work")
    shard.delete(ids[:700])
    fresh_ids = np.arange(90_000, 90_050, dtype=np.int64)
    fresh = random_vectors(50, seed=25)
    shard.upsert(fresh_ids, fresh, attrs_for(fresh_ids))
    shard.compact()
    shard.snapshot(tmp_path / "snap", "4-0")
    loaded, _ = Shard.load(tmp_path / "snap", work_dir=tmp_path / "loaded")
    np.testing.assert_array_equal(loaded.ids(), shard.ids())
    assert _own_id_first(loaded, fresh_ids, fresh)
    assert _own_id_first(loaded, ids[700:], x[700:])
