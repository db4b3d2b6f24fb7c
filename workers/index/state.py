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
