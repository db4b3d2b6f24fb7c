"""What a search may return: the live vectors matching a filter, as FAISS's selector reads
them, computed once per version of a shard's columns and reused by every search until the
next write."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from workers.index.columns import Columns
from workers.index.types import SearchFilter

CACHED_FILTERS = 16
# what gathering and scoring one matching row costs, in rows a bitmap scan skips (~0.3-0.4
# us against ~5 ns at 100k, 512-d), see `searching.search`
SUBSET_COST = 70


class Selection(NamedTuple):
    """A packed bitmap over slots (None: everything in the indexes), how many vectors
    match, and their slots when few enough to gather (see `searching.search`)."""

    bits: np.ndarray | None
    n_match: int
    slots: np.ndarray | None = None


class Selections:
    """Selections of one version of a shard's columns: the live count and the bitmaps of
    the last CACHED_FILTERS filters. Asking with a newer version drops the older ones.

    Concurrent searches share it (all at one version: a write waits for them). Its state
    is one tuple replaced in one store, so a search racing another's refresh finds one
    version's state or the next's, never a newer version beside older bitmaps."""

    def __init__(self) -> None:
        self._state: tuple[int, Selection | None, dict[SearchFilter | None, Selection]]
        self._state = (-1, None, {})

    def _at(self, version: int) -> tuple[int, Selection | None, dict]:
        state = self._state
        if state[0] != version:
            state = self._state = (version, None, {})
        return state

    def live(self, version: int, cols: Columns) -> Selection:
        """Every live vector and no bitmap: counted, without building the unfiltered
        bitmap, which a shard removing in place never passes (~0.36 ms at 1M after every
        write)."""
        _, live, filtered = self._at(version)
        if live is None:
            live = Selection(None, int(np.count_nonzero(cols["alive"])))
            self._state = (version, live, filtered)
        return live

    def matching(self, version: int, cols: Columns, flt: SearchFilter | None) -> Selection:
        """The packed bitmap of the live vectors matching `flt`, their count, and their
        slots if few enough for a gather to take."""
        _, live, filtered = self._at(version)
        key = None if flt is None or flt.is_empty else flt
        found = filtered.get(key)
        if found is not None:
            return found
        mask = cols.filter_mask(key)
        n_match = int(np.count_nonzero(mask))
        slots = np.flatnonzero(mask) if SUBSET_COST * n_match <= len(mask) else None
        found = Selection(np.packbits(mask, bitorder="little"), n_match, slots)
        if len(filtered) >= CACHED_FILTERS:
            filtered = {}
            self._state = (version, live, filtered)
        filtered[key] = found
        return found

    @property
    def nbytes(self) -> int:
        return sum(
            (0 if s.bits is None else s.bits.nbytes) + (0 if s.slots is None else s.slots.nbytes)
            for s in self._state[2].values()
        )
