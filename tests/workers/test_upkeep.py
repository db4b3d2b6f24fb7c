"""Shard self-maintenance decisions on a real shard."""

from __future__ import annotations

import threading

import numpy as np

from tests.workers.index.conftest import attrs_for, random_vectors
from workers.index.shard import Shard
from workers.index.types import VectorAttrs
from workers.serving.upkeep import Upkeep, UpkeepPolicy, fold_step


class FakeReplicaShell:
    """The replica attributes upkeep uses, around a real Shard (no Redis or store needed)."""

    def __init__(self, shard: Shard, tmp_path) -> None:
        self.shard = shard
        self.shard_no = 0
        self.last_applied = "5-0"
        self.snapshots = 0
        self.tmp_path = tmp_path

    def publish_snapshot(self):
        self.snapshots += 1
        return self.shard.snapshot(self.tmp_path, self.last_applied)


def _shard(n: int, tmp_path) -> Shard:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    shard = Shard(16, "m", "Flat", work_dir=tmp_path / "work")
    ids = np.arange(n, dtype=np.int64)
    shard.upsert(ids, vectors, VectorAttrs.build(ids, np.zeros(n), np.ones(n), np.ones(n)))
    return shard


def test_compacts_when_many_ids_are_removed_and_snapshots_when_due(tmp_path):
    shard = _shard(2000, tmp_path)
    replica = FakeReplicaShell(shard, tmp_path)
    upkeep = Upkeep(
        UpkeepPolicy(max_removed_fraction=0.2, max_delta=10**9, snapshot_every_s=60, min_slots=100),
        last_snapshot_at=0.0,
    )
    assert upkeep.run(replica, now=10.0) == []
    shard.delete(np.arange(600, dtype=np.int64))
    assert upkeep.run(replica, now=20.0) == ["compact"]
    assert shard.stats()["removed_fraction"] == 0.0
    assert upkeep.run(replica, now=61.0) == ["snapshot"]
    assert upkeep.run(replica, now=200.0) == []  # nothing new since the last snapshot
    assert replica.snapshots == 1


def test_fresh_vectors_of_a_compressed_ivf_wait_for_their_share_of_the_slots(tmp_path):
    shard = Shard(64, "m", "IVF8,PQ4x4", work_dir=tmp_path / "work")
    ids = np.arange(3000, dtype=np.int64)
    shard.upsert(ids, random_vectors(3000, dim=64), attrs_for(ids))
    shard.compact()  # trains: from now on fresh codes go into the lists
    fresh = np.arange(5000, 5080, dtype=np.int64)
    shard.upsert(fresh, random_vectors(80, dim=64, seed=3), attrs_for(fresh))
    assert shard.stats()["fresh_in_bulk"]
    replica = FakeReplicaShell(shard, tmp_path)
    policy = UpkeepPolicy(max_delta=50, max_fresh_fraction=0.05, snapshot_every_s=1e9)
    assert Upkeep(policy).run(replica) == []  # 80 fresh < 5% of 3080 slots
    assert Upkeep(UpkeepPolicy(max_delta=50, max_fresh_fraction=0.02)).run(replica) == ["compact"]
    assert shard.delta_size == 0
    graph = Shard(64, "m", "HNSW8", work_dir=tmp_path / "graph")  # an exact delta: max_delta
    graph.upsert(fresh, random_vectors(80, dim=64, seed=3), attrs_for(fresh))
    assert Upkeep(policy).run(FakeReplicaShell(graph, tmp_path)) == ["compact"]


def test_a_graph_delta_is_folded_a_chunk_a_step_until_none_is_left(tmp_path):
    """Each step folds one chunk and asks for a rest while more is left; the last chunk
    and an empty delta end the folding. Other kinds have nothing to fold."""
    graph = Shard(16, "m", "HNSW16", work_dir=tmp_path / "graph")
    ids = np.arange(200, dtype=np.int64)
    vectors = random_vectors(200, dim=16)
    graph.upsert(ids, vectors, attrs_for(ids))
    assert graph.delta_size == 200
    rests = []
    while (rest := fold_step(graph)) is not None:
        rests.append(rest)
    assert len(rests) == 3  # three chunks of 64 leave more; the last 8 empty the delta
    assert graph.delta_size == 0
    assert fold_step(graph) is None
    assert all(r >= 0 for r in rests)
    np.testing.assert_array_equal(graph.search(vectors[:5], 1).image_ids[:, 0], ids[:5])
    flat = _shard(100, tmp_path)
    assert fold_step(flat) is None


def test_in_the_background_the_log_goes_on_while_a_compaction_builds(tmp_path):
    """The shard service's upkeep compacts on a thread of its own: upserts (the log being
    applied) go on meanwhile and land in the compacted state; one compaction at a time."""
    shard = _shard(2000, tmp_path)
    replica = FakeReplicaShell(shard, tmp_path)
    policy = UpkeepPolicy(max_removed_fraction=0.2, snapshot_every_s=1e9, min_slots=100)
    upkeep = Upkeep(policy, background=True)
    shard.delete(np.arange(600, dtype=np.int64))
    building, release = threading.Event(), threading.Event()
    backend = shard.state.backend
    build = backend.compacted

    def held(*args, **kwargs):
        building.set()
        assert release.wait(60), "the test never released the build"
        return build(*args, **kwargs)

    backend.compacted = held  # type: ignore[method-assign]
    assert upkeep.run(replica) == ["compact"]
    try:
        assert building.wait(60)
        assert upkeep.compacting
        assert upkeep.run(replica) == []  # still due, but one is running
        fresh = np.arange(5000, 5010, dtype=np.int64)
        vectors = random_vectors(10, dim=16, seed=4)
        shard.upsert(fresh, vectors, attrs_for(fresh))  # does not wait for the compaction
    finally:
        release.set()
    assert upkeep._compaction is not None
    upkeep._compaction.join(60)
    assert not upkeep.compacting
    assert shard.stats()["removed_fraction"] == 0.0
    np.testing.assert_array_equal(shard.search(vectors, 1).image_ids[:, 0], fresh)
