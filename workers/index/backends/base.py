"""What a shard asks of the index that stores its vectors, whatever its kind.

A backend holds the vectors of slots (a vector's label inside FAISS is its slot, handed
out in arrival order), never ids or attributes: the shard keeps those in columns and
passes searches a bitmap of the slots they may return. Everything that depends on how an
index stores vectors (training, fresh vectors, removal, parameters, re-ranking, rebuilds,
memory, files) lives in the backend of that kind; the shard composes one with its columns.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from workers.index.spec import SearchParams

Hits = tuple[np.ndarray, np.ndarray]  # (scores, slots) per query, best first; -1 past the hits
ReadLock = Callable[[], ContextManager[None]]  # shared access to the live state, see `chunks`
CHUNK = 65_536  # rows read from a live index under one read lock during a compaction


class Backend(Protocol):
    """One index kind. Writes run under the shard's write lock, searches under its read
    lock; `compacted` builds a new backend aside while both go on."""

    @property
    def removes_in_place(self) -> bool:
        """Removed vectors leave the index at once: unfiltered searches need no bitmap."""
        ...

    @property
    def n_bulk(self) -> int:
        """Slots [0, n_bulk) are in the trained bulk index; later ones wait beside it."""
        ...

    @property
    def n_fresh(self) -> int:
        """Vectors waiting for a compaction (exact beside the bulk, or rows kept in RAM)."""
        ...

    def add(self, vectors: np.ndarray, slots: np.ndarray) -> None:
        """Fresh unit vectors; their slots follow every slot added before."""

    def remove(self, slots: np.ndarray) -> None:
        """Slots removed or superseded (searches also mask them unless removes_in_place)."""

    def search(
        self,
        queries: np.ndarray,
        fetch: int,
        bits: np.ndarray | None,
        params: SearchParams,
        exhaustive: bool,
    ) -> Hits:
        """Top `fetch` (score, slot), through the bitmap of allowed slots if any;
        `exhaustive`: visit every allowed vector (the knobs widened by the caller)."""

    def starts_exhaustive(
        self, bits: np.ndarray | None, n_match: int, params: SearchParams
    ) -> bool:
        """Whether a search should visit every match from the first round (a flat scan, or
        a graph's rows scanned when a bitmap leaves few)."""

    def gather_cost(self, params: SearchParams, exhaustive: bool) -> float | None:
        """Rows a search visits, to weigh against scoring a filter's matches alone
        (`score_subset`); None where this backend keeps no rows to gather."""

    def score_subset(
        self, queries: np.ndarray, fetch: int, bits: np.ndarray | None, slots: np.ndarray
    ) -> Hits:
        """Top `fetch` of the rows of `slots` (sorted) scored exactly, fresh ones too."""

    def rows(self, slots: np.ndarray) -> np.ndarray:
        """float32 rows of live slots (a compaction catching up reads fresh ones)."""

    def fold(self, max_vectors: int) -> int:
        """Move up to `max_vectors` waiting vectors into the bulk; how many moved."""

    def compacted(
        self, keep: np.ndarray, n_slots: int, read: ReadLock, rebuild: bool
    ) -> tuple[Backend, np.ndarray] | None:
        """A new backend and the old slots it holds, renumbered 0..len-1: the live slots
        `keep` (sorted, below `n_slots`, the slots handed out when the compaction began),
        or every slot below `n_slots` where dropping some would cost a rebuild. Built
        without the write lock: the live index is read in chunks, each under `read()`.
        None when there is nothing to gain (or too little to train on)."""

    def memory_bytes(self) -> int: ...

    def save(self, directory: Path) -> dict[str, object]:
        """Write the index files into `directory`; what `load` needs from the metadata."""

    def close(self) -> None:
        """Release files of its own (a re-rank file); snapshots keep their own links."""


def search_params(
    bits: np.ndarray | None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    quantizer_ef: int | None = None,
) -> faiss.SearchParameters:
    """FAISS search parameters with a bitmap selector over `bits` (if any) and the knob of
    the index kind (nprobe of an IVF, efSearch of a graph), made per call: nothing shared
    between concurrent searches is written to. The objects it points into are held by
    `referenced_objects` (the parameters do not own them)."""
    sel = None if bits is None else faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
    quantizer = None
    if nprobe is not None:
        made = faiss.SearchParametersIVF(nprobe=nprobe)
        if quantizer_ef is not None:
            quantizer = faiss.SearchParametersHNSW(efSearch=quantizer_ef)
            made.quantizer_params = quantizer
    elif ef_search is not None:
        made = faiss.SearchParametersHNSW(efSearch=ef_search)
    else:
        made = faiss.SearchParameters()
    if sel is not None:
        made.sel = sel
    made.referenced_objects = [sel, quantizer, bits]
    return made


def score_rows(queries: np.ndarray, rows: np.ndarray, slots: np.ndarray, fetch: int) -> Hits:
    """Top `fetch` of `rows` (the float32 rows of `slots`) by exact inner product."""
    nq = len(queries)
    scores = np.full((nq, fetch), -np.inf, dtype=np.float32)
    labels = np.full((nq, fetch), -1, dtype=np.int64)
    if len(slots):
        found = min(fetch, len(slots))
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        scores[:, :found], at = faiss.knn(queries, rows, found, metric=faiss.METRIC_INNER_PRODUCT)
        labels[:, :found] = np.where(at >= 0, slots[np.maximum(at, 0)], -1)
    return scores, labels


def chunks(
    slots: np.ndarray, read: ReadLock, gather: Callable[[np.ndarray], np.ndarray]
) -> Iterator[np.ndarray]:
    """float32 rows of `slots`, a chunk at a time, each gathered under `read()`: writers
    wait for one chunk at most, searches for nothing."""
    for start in range(0, len(slots), CHUNK):
        with read():
            rows = np.array(gather(slots[start : start + CHUNK]), dtype=np.float32)
        time.sleep(0)  # let searches waiting for the GIL in (else up to 5 ms each)
        yield rows


def no_lock() -> ContextManager[None]:
    """`ReadLock` of a backend no one else can see yet."""
    return contextlib.nullcontext()


def new_of_old(n_old: int, keep: np.ndarray) -> np.ndarray:
    """For each old slot its new one (-1: dropped), `keep` becoming 0..len(keep)-1."""
    mapping = np.full(n_old, -1, dtype=np.int64)
    mapping[keep] = np.arange(len(keep), dtype=np.int64)
    return mapping
