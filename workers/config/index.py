"""How shards pick and run their FAISS index, and when a live replica compacts and snapshots."""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.config.parse import env


@dataclass(frozen=True)
class IndexConfig:
    """FAISS OpenMP threads (searches default to one: two spin on a barrier on a busy box),
    the shard sizes where `auto` moves from Flat to HNSW, to IVF and to OPQ+IVF+PQ, and
    whether a shard's bulk gets a GPU copy where faiss finds a GPU."""

    search_threads: int = field(default=1, metadata=env("FAISS_SEARCH_THREADS"))
    train_threads: int = field(default=1, metadata=env("FAISS_TRAIN_THREADS"))
    flat_max: int = field(default=10_000, metadata=env("INDEX_FLAT_MAX"))
    hnsw_max: int = field(default=50_000, metadata=env("INDEX_HNSW_MAX"))
    ivfpq_min: int = field(default=2_000_000, metadata=env("INDEX_IVFPQ_MIN"))
    # `auto`: a GPU copy of each shard's bulk where faiss finds a GPU; off (0, no, false):
    # never. Batches of at least `gpu_min_batch` queries go to the copy.
    gpu: str = field(default="auto", metadata=env("INDEX_GPU"))
    gpu_min_batch: int = field(default=16, metadata=env("INDEX_GPU_MIN_BATCH"))

    def __post_init__(self) -> None:
        if min(self.search_threads, self.train_threads) < 1:
            raise ValueError("thread counts must be at least 1")
        if not 0 < self.flat_max <= self.hnsw_max <= self.ivfpq_min:
            raise ValueError("need 0 < INDEX_FLAT_MAX <= INDEX_HNSW_MAX <= INDEX_IVFPQ_MIN")
        if self.gpu.lower() not in _GPU_AUTO | _GPU_OFF:
            raise ValueError("INDEX_GPU must be auto or off (0, no, false)")
        if self.gpu_min_batch < 1:
            raise ValueError("INDEX_GPU_MIN_BATCH must be at least 1")

    @property
    def use_gpu(self) -> bool:
        return self.gpu.lower() in _GPU_AUTO


_GPU_AUTO = frozenset({"auto", "1", "yes", "true", "on"})
_GPU_OFF = frozenset({"0", "no", "false", "off"})


@dataclass(frozen=True)
class UpkeepPolicy:
    """When a live replica compacts and publishes a snapshot."""

    # Compact when this share of the slots holds removed or superseded vectors...
    max_removed_fraction: float = field(default=0.2, metadata=env("SHARD_COMPACT_REMOVED_FRACTION"))
    # ... or when the exact delta index holds this many fresh vectors.
    max_delta: int = field(default=20_000, metadata=env("SHARD_COMPACT_DELTA"))
    # A compressed IVF's fresh vectors cost no search time (their codes are in the lists,
    # their rows re-ranked in place) but RAM, and compacting rewrites its whole re-rank
    # file: it waits for this share of the slots.
    max_fresh_fraction: float = field(default=0.02, metadata=env("SHARD_COMPACT_FRESH_FRACTION"))
    # Publish a snapshot when this many seconds passed since the last one and something
    # changed; a fresh replica replays the log from the newest one.
    snapshot_every_s: float = field(default=300.0, metadata=env("SHARD_SNAPSHOT_EVERY_S"))
    # Ignore the removed fraction of tiny shards (compaction is pointless there).
    min_slots: int = 1000

    def __post_init__(self) -> None:
        fractions = (self.max_removed_fraction, self.max_fresh_fraction)
        if not all(0 < f <= 1 for f in fractions) or self.max_delta < 1:
            raise ValueError("fractions must be in (0, 1], the delta at least 1")
        if self.snapshot_every_s <= 0:
            raise ValueError("the snapshot period must be more than 0 seconds")
