"""Everything a search of a shard reads, in one object replaced in one store.

A build, a compaction, a swap and a snapshot load each make a new `ShardState` and
swap it in whole, so no search finds a new index beside old columns, and no field is
copied over by name (a cached flag forgotten by such a copy was a bug once). Writes
between swaps change the backend and the columns in place under the shard's write lock
and store a state with the next version (the key of per-version caches)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from workers.index.backends.base import Backend
from workers.index.columns import Columns, IdLookup
from workers.index.depth import DepthTable
from workers.index.selection import Selection, Selections
from workers.index.spec import SearchParams
from workers.index.types import SearchFilter


@dataclass(frozen=True)
class ShardState:
    backend: Backend
    cols: Columns
    lookup: IdLookup
    params: SearchParams
    tune_report: dict[str, Any] = field(default_factory=dict)
    depths: DepthTable = field(default_factory=DepthTable)
    version: int = 0
    selections: Selections = field(default_factory=Selections)  # filter bitmaps, by version

    @classmethod
    def of(
        cls, backend: Backend, cols: Columns, params: SearchParams, tune: dict, version: int
    ) -> ShardState:
        """A state over new columns: their id lookup built, no bitmap cached yet."""
        lookup = IdLookup()
        lookup.rebuild(cols["image_ids"], cols["alive"])
        return cls(backend, cols, lookup, params, tune, DepthTable.from_report(tune), version)

    def next(self) -> ShardState:
        """The same objects at the next version (after a write changed them in place)."""
        return replace(self, version=self.version + 1)

    def tuned(self, params: SearchParams | None = None, tune: dict | None = None) -> ShardState:
        """New knobs or tune report (the depth table follows the report)."""
        if tune is None:
            return replace(self, params=params or self.params, version=self.version + 1)
        depths = DepthTable.from_report(tune)
        version = self.version + 1
        return replace(
            self, params=params or self.params, tune_report=tune, depths=depths, version=version
        )

    @property
    def memory_bytes(self) -> int:
        lookup = self.lookup.order.nbytes
        return self.cols.nbytes + lookup + self.selections.nbytes + self.backend.memory_bytes()

    def counts(self, ivf: bool) -> dict[str, object]:
        """Vectors, slots, removed and fresh ones, memory: what upkeep and metrics read."""
        backend = self.backend
        cpu = getattr(backend, "cpu", backend)  # under a GPU copy
        rerank = getattr(cpu, "rerank", None)
        # a compressed IVF's fresh vectors are searched in its lists: they cost RAM only
        fresh_in_bulk = ivf and rerank is not None and bool(getattr(cpu, "trained", False))
        alive, slots = self.live_count, self.cols.size
        return {
            "vectors": alive,
            "slots": slots,
            "bulk_size": backend.n_bulk - (backend.n_fresh if fresh_in_bulk else 0),
            "delta_size": backend.n_fresh,
            "fresh_in_bulk": fresh_in_bulk,
            "removed": slots - alive,
            "removed_fraction": (slots - alive) / slots if slots else 0.0,
            "memory_bytes": self.memory_bytes,
            "rerank_disk_bytes": rerank.disk_bytes if rerank is not None else 0,
        }

    @property
    def live_count(self) -> int:
        return self.selections.live(self.version, self.cols).n_match

    def selection(self, flt: SearchFilter | None) -> Selection:
        """The bitmap a search must test (None: every vector in the index qualifies, as in
        an unfiltered search of a backend that removes in place, or of one with nothing
        removed), how many vectors match, and which when few do. A selector costs even
        when it passes everything: ~4% of an IVF scan, 7-15% of a flat one."""
        if flt is None or flt.is_empty:
            everything = self.selections.live(self.version, self.cols)
            if self.backend.removes_in_place or everything.n_match == self.cols.size:
                return everything
        return self.selections.matching(self.version, self.cols, flt)

    def find(self, image_ids: np.ndarray) -> np.ndarray:
        """The live slot of each image id, -1 where absent."""
        return self.lookup.find(np.asarray(image_ids, dtype=np.int64), self.cols)
