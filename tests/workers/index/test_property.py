"""Random operation sequences against a brute-force model of the same operations.

Every operation goes to shards directly and to the shard's update log on the private Redis,
which a replica follows; the replica snapshots, trims the log, and restarts from its
snapshot with a replay of what came after. After every step each shard must answer as
numpy does: batched and single queries, with and without a filter.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from tests.workers.index.conftest import DIM, attrs_for, brute_force, random_vectors
from workers.index.artifacts import ArtifactStore
from workers.index.log import UpdateLog, log_key, trimmed_key
from workers.index.replica import ShardReplica
from workers.index.shard import Shard
from workers.index.spec import SearchParams
from workers.index.types import SearchFilter

IDS = st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=12)
QUERIES = random_vectors(3, seed=99)
EXHAUSTIVE = SearchParams(nprobe=4, ef_search=512, rerank_k=4000)  # every vector visited
IN_STOCK = SearchFilter(in_stock=True)  # attrs_for: ids not divisible by 3
LOG_SHARD = 90
MODEL = "m"


class ShardModel(RuleBasedStateMachine):
    """A shard of every backend searched exhaustively (Flat; IVF-Flat and a compressed IVF
    with every list probed, the latter re-ranking every candidate from bfloat16 rows; a
    graph searched wider than it holds vectors), and an IVF-Flat replica fed by the log
    (trained from its delta on its first compaction), against numpy."""

    def __init__(self, client: redis.Redis, trained: dict[str, Path]) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)
        self.client = client
        client.delete(log_key(LOG_SHARD), trimmed_key(LOG_SHARD))
        self.log = UpdateLog(client, LOG_SHARD, MODEL, DIM)
        self.shards = {
            "Flat": Shard(DIM, MODEL, "Flat", work_dir=self.root / "flat-work"),
            **{
                spec: Shard.load(snapshot, work_dir=self.root / f"{spec}-work")[0]
                for spec, snapshot in trained.items()
            },
            "HNSW8": Shard(DIM, MODEL, "HNSW8", work_dir=self.root / "hnsw-work"),
        }
        self.replica = self._replica()
        self.vectors: dict[int, np.ndarray] = {}
        self.products: dict[int, int] = {}
        self.log_position = 0
        self.seed = 1000

    def _replica(self) -> ShardReplica:
        replica = ShardReplica(
            self.client,
            LOG_SHARD,
            MODEL,
            DIM,
            store=ArtifactStore((self.root / "store").as_uri()),
            local_dir=self.root / "replica",
            spec="IVF4,Flat",
        )
        assert replica.recover()
        return replica

    @rule(ids=IDS, images_per_product=st.sampled_from([1, 3]))
    def upsert(self, ids: list[int], images_per_product: int) -> None:
        arr = np.array(ids, dtype=np.int64)
        self.seed += 1
        x = random_vectors(len(arr), seed=self.seed)
        attrs = attrs_for(arr, images_per_product)
        for shard in self.shards.values():
            shard.upsert(arr, x, attrs)
        self.log.append_upserts(arr, x, attrs)
        for i, image_id in enumerate(ids):
            self.vectors[image_id] = x[i]
            self.products[image_id] = int(attrs.product_ids[i])
        self.log_position += 1

    @rule(ids=IDS)
    def delete(self, ids: list[int]) -> None:
        for shard in self.shards.values():
            shard.delete(np.array(ids, dtype=np.int64))
        self.log.append_deletes(np.array(ids, dtype=np.int64))
        for image_id in ids:
            self.vectors.pop(image_id, None)
        self.log_position += 1

    @rule(rebuild=st.booleans())
    def compact(self, rebuild: bool) -> None:
        for shard in self.shards.values():
            shard.compact(force_rebuild=rebuild)
        self.replica.catch_up()
        self.replica.shard.compact()

    @rule()
    def snapshot_and_reload(self) -> None:
        for name, shard in list(self.shards.items()):
            directory = self.root / name.replace(",", "_")
            shard.snapshot(directory, f"{self.log_position}-0")
            loaded, position = Shard.load(directory, work_dir=self.root / f"{name}-w{self.seed}")
            assert position == f"{self.log_position}-0"
            self.shards[name] = loaded

    @rule()
    def replica_snapshots(self) -> None:
        self.replica.catch_up()
        self.replica.publish_snapshot()

    @rule()
    def replica_trims_the_log(self) -> None:
        self.replica.catch_up()
        self.replica.trim_log()  # only behind its artifacts: a restart replays the rest

    @rule(caught_up=st.booleans())
    def replica_restarts(self, caught_up: bool) -> None:
        """A new process: the newest artifact in the store, then the log from its position
        (with or without the old replica having applied everything before it stopped)."""
        if caught_up:
            self.replica.catch_up()
        self.replica = self._replica()

    @invariant()
    def same_results_as_brute_force(self) -> None:
        self.replica.catch_up()
        live = np.array(sorted(self.vectors), dtype=np.int64)
        in_stock = {i for i in self.vectors if i % 3 != 0}
        expected = {
            None: brute_force(self.vectors, self.products, QUERIES, 5),
            IN_STOCK: brute_force(self.vectors, self.products, QUERIES, 5, allowed=in_stock),
        }
        for name, shard in [*self.shards.items(), ("replica", self.replica.shard)]:
            rounded = "PQ" in name  # re-ranked from bfloat16 rows: ties within 1e-2 may swap
            for flt, expect in expected.items():
                batch = shard.search(QUERIES, 5, flt, params=EXHAUSTIVE)
                for row, exp in enumerate(expect):
                    q = QUERIES[row : row + 1]
                    single = shard.search(q, 5, flt, params=EXHAUSTIVE)
                    for result, at in ((batch, row), (single, 0)):
                        got = [int(p) for p in result.product_ids[at] if p >= 0]
                        scores = result.scores[at][: len(exp)]
                        if rounded:
                            assert len(got) == len(exp)
                            allowed = None if flt is None else in_stock
                            ranked = brute_force(self.vectors, self.products, q, 99, allowed)
                            best = dict(ranked[0])
                            np.testing.assert_allclose(scores, [s for _, s in exp], atol=1e-2)
                            np.testing.assert_allclose(scores, [best[p] for p in got], atol=1e-2)
                            continue
                        assert got == [p for p, _ in exp]
                        np.testing.assert_allclose(
                            scores, [s for _, s in exp], rtol=1e-4, atol=1e-5
                        )
            np.testing.assert_array_equal(shard.ids(), live)
            assert shard.contains(live).all()

    def teardown(self) -> None:
        self.tmp.cleanup()


def trained_snapshots(root: Path) -> dict[str, Path]:
    """An IVF-Flat and a compressed IVF shard, trained on warm vectors that are then
    deleted, snapshotted once: every example starts from a copy loaded from these rather
    than training its own (the training was half of this test's time)."""
    snapshots = {}
    for spec in ("IVF4,Flat", "IVF4,PQ4x4"):
        shard = Shard(DIM, MODEL, spec, work_dir=root / f"{spec}-work")
        warm = np.arange(10_000, 11_024, dtype=np.int64)  # enough to train either (`min_train`)
        shard.upsert(warm, random_vectors(1024, seed=5), attrs_for(warm))
        shard.compact()  # trains the coarse quantizer (and the codes)
        shard.delete(warm)
        snapshots[spec] = root / spec.replace(",", "_")
        shard.snapshot(snapshots[spec], "0-0")
    return snapshots


def test_shards_and_a_log_fed_replica_match_a_brute_force_model(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    trained = trained_snapshots(tmp_path)
    run_state_machine_as_test(
        lambda: ShardModel(redis_client, trained),
        settings=settings(
            max_examples=60,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
