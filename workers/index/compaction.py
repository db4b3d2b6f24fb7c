"""Compaction off the write lock: build the compacted state aside, catch up, swap.

The backend builds its compacted index from the live one read in chunks, each under the
read lock (writers wait for one chunk at most; searches never wait), then the write lock
is held once, briefly, to apply what changed meanwhile (slots removed since, vectors
added since) and to store the new state. A plain graph's delta is folded in chunks
instead, each under a short write lock (see `backends.hnsw`)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from workers.index.state import ShardState

if TYPE_CHECKING:
    from workers.index.shard import Shard

FOLD_CHUNK = 64  # delta vectors a graph takes per write lock (~20 ms), see `Shard.fold_delta`


def compact(shard: Shard, force_rebuild: bool = False) -> bool:
    """Fold fresh vectors into the bulk and drop removed ones where that is cheap (a graph
    is rebuilt past its rebuild fraction or when forced); whether a new state was swapped
    in. One compaction at a time; writes and searches go on meanwhile."""
    with shard.compacting:
        with shard.lock.read():
            state = shard.state
            n_slots = state.cols.size
            keep = np.flatnonzero(state.cols["alive"])
        dead_fraction = (n_slots - len(keep)) / max(1, n_slots)
        rebuild = len(keep) < n_slots and (force_rebuild or dead_fraction > shard.rebuild_fraction)
        built = state.backend.compacted(keep, n_slots, shard.lock.read, rebuild)
        if built is None:
            while shard.fold_delta(FOLD_CHUNK):
                pass
            return False
        backend, kept = built
        with shard.lock.read():
            cols = state.cols.taken(kept)
        fresh = ShardState.of(backend, cols, state.params, state.tune_report, state.version)
        with shard.writer, shard.lock.write():
            current = shard.state
            if current.backend is not state.backend:  # a build or a load came in between
                backend.close()
                return False
            _catch_up(fresh, current, kept, n_slots)
            shard.state = replace(
                fresh,
                params=current.params,
                tune_report=current.tune_report,
                depths=current.depths,
                version=current.version + 1,
            )
        current.backend.close()  # its re-rank file (snapshots hold their own links)
        return True


def _catch_up(fresh: ShardState, current: ShardState, kept: np.ndarray, n_slots: int) -> None:
    """Apply to the compacted state what the live one took since the compaction began:
    removals of kept slots, and the vectors added since (their rows read from the live
    backend), in slot order."""
    live = current.cols
    # every kept slot dead now, also those the copy of the columns already saw dead: the
    # index may have been read before they died (removing an absent one is a no-op)
    gone = np.flatnonzero(~live["alive"][kept])
    if len(gone):
        fresh.cols.data["alive"][gone] = False
        fresh.backend.remove(gone)
    arrived = n_slots + np.flatnonzero(live["alive"][n_slots:])
    if len(arrived):
        ids = live.data["image_ids"][arrived].astype(np.int64)
        slots = fresh.cols.append(ids, live.attrs(arrived))
        fresh.backend.add(current.backend.rows(arrived), slots)
        fresh.lookup.add_recent(ids, slots)
