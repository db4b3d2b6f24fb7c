"""Random operation sequences against a brute-force model of the same operations."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.workers.index.conftest import DIM, attrs_for, brute_force, random_vectors
from workers.index.shard import Shard
from workers.index.spec import SearchParams

IDS = st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=12)
QUERIES = random_vectors(3, seed=99)
EXHAUSTIVE = SearchParams(nprobe=4)


class ShardModel(RuleBasedStateMachine):
    """Flat (exact) and IVF-Flat with every list probed (also exact) against numpy."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)
        self.shards = {
            "Flat": Shard(DIM, "m", "Flat", work_dir=self.root / "flat-work"),
            "IVF4,Flat": self._trained_ivf(),
        }
        self.vectors: dict[int, np.ndarray] = {}
        self.products: dict[int, int] = {}
        self.log_position = 0
        self.seed = 1000

    def _trained_ivf(self) -> Shard:
        shard = Shard(DIM, "m", "IVF4,Flat", work_dir=self.root / "ivf-work")
        warm = np.arange(10_000, 10_064, dtype=np.int64)
        shard.upsert(warm, random_vectors(64, seed=5), attrs_for(warm))
        shard.compact()  # trains the coarse quantizer
        shard.delete(warm)
        return shard

    @rule(ids=IDS, images_per_product=st.sampled_from([1, 3]))
    def upsert(self, ids: list[int], images_per_product: int) -> None:
        arr = np.array(ids, dtype=np.int64)
        self.seed += 1
        x = random_vectors(len(arr), seed=self.seed)
        attrs = attrs_for(arr, images_per_product)
        for shard in self.shards.values():
            shard.upsert(arr, x, attrs)
        for i, image_id in enumerate(ids):
            self.vectors[image_id] = x[i]
            self.products[image_id] = int(attrs.product_ids[i])
        self.log_position += 1

    @rule(ids=IDS)
    def delete(self, ids: list[int]) -> None:
        for shard in self.shards.values():
            shard.delete(np.array(ids, dtype=np.int64))
        for image_id in ids:
            self.vectors.pop(image_id, None)
        self.log_position += 1

    @rule()
    def compact(self) -> None:
        for shard in self.shards.values():
            shard.compact()

    @rule()
    def snapshot_and_reload(self) -> None:
        for name, shard in list(self.shards.items()):
            directory = self.root / name.replace(",", "_")
            shard.snapshot(directory, f"{self.log_position}-0")
            loaded, position = Shard.load(directory, work_dir=self.root / f"{name}-w{self.seed}")
            assert position == f"{self.log_position}-0"
            self.shards[name] = loaded

    @invariant()
    def same_results_as_brute_force(self) -> None:
        expect = brute_force(self.vectors, self.products, QUERIES, 5)
        live = np.array(sorted(self.vectors), dtype=np.int64)
        for shard in self.shards.values():
            result = shard.search(QUERIES, 5, params=EXHAUSTIVE)
            for row, exp in enumerate(expect):
                got = [int(p) for p in result.product_ids[row] if p >= 0]
                assert got == [p for p, _ in exp]
                np.testing.assert_allclose(
                    result.scores[row][: len(exp)], [s for _, s in exp], rtol=1e-4, atol=1e-5
                )
            np.testing.assert_array_equal(shard.ids(), live)
            assert shard.contains(live).all()

    def teardown(self) -> None:
        self.tmp.cleanup()


ShardModel.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestShardModel = ShardModel.TestCase
