"""Filter bitmaps per version of a shard's columns."""

from __future__ import annotations

import numpy as np

from workers.index.columns import Columns
from workers.index.selection import SUBSET_COST, Selections
from workers.index.types import SearchFilter, VectorAttrs

N = 10_000


def columns() -> Columns:
    ids = np.arange(N, dtype=np.int64)
    cols = Columns()
    cols.append(ids, VectorAttrs.build(ids, ids % 100, ids.astype(np.float32), ids % 2 == 0))
    return cols


def unpacked(bits: np.ndarray) -> np.ndarray:
    return np.unpackbits(bits, bitorder="little")[:N].astype(bool)


def test_a_selection_names_the_live_matches_and_their_slots_when_rare() -> None:
    cols = columns()
    cols.data["alive"][:10] = False
    selections = Selections()
    rare = selections.matching(1, cols, SearchFilter(category_ids=frozenset({7})))
    assert rare.n_match == 99  # category 7 but id 7, deleted
    assert SUBSET_COST * rare.n_match <= N
    assert np.array_equal(np.flatnonzero(unpacked(rare.bits)), np.arange(107, N, 100))
    assert np.array_equal(rare.slots, np.arange(107, N, 100))
    broad = selections.matching(1, cols, SearchFilter(in_stock=True))
    assert broad.n_match == N // 2 - 5
    assert broad.slots is None  # too many to gather
    assert np.array_equal(unpacked(broad.bits), cols["alive"] & (np.arange(N) % 2 == 0))
    assert selections.live(1, cols) == (None, N - 10, None)  # counted, no bitmap


def test_a_selection_is_reused_within_a_version_and_recomputed_after_a_write() -> None:
    cols = columns()
    selections = Selections()
    flt = SearchFilter(max_price=99.0)
    first = selections.matching(1, cols, flt)
    assert selections.matching(1, cols, SearchFilter(max_price=99.0)) is first
    assert selections.live(1, cols).n_match == N
    assert selections.nbytes == first.bits.nbytes + first.slots.nbytes
    cols.data["alive"][:50] = False  # a write: the shard's version moves on
    assert selections.matching(2, cols, flt).n_match == 50
    assert selections.live(2, cols).n_match == N - 50
