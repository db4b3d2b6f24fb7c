"""Shard self-maintenance decisions on a real shard."""

from __future__ import annotations

import numpy as np

from workers.index.shard import Shard
from workers.index.types import VectorAttrs
from workers.serving.upkeep import Upkeep, UpkeepPolicy


class FakeReplicaShell:
    """The two replica attributes upkeep uses, around a real Shard (no Redis needed)."""

    def __init__(self, shard: Shard, tmp_path) -> None:
        self.shard = shard
        self.shard_no = 0
        self.last_applied = "5-0"
        self.snapshots = 0
        self.tmp_path = tmp_path

    def snapshot(self):
        self.snapshots += 1
        return self.shard.snapshot(self.tmp_path, self.last_applied)

    def trim_log(self) -> int:
        return 0


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
