"""One index shard: a trained bulk FAISS index, a small delta index and the removed set.

- Vectors carry slots (arrival order) as their FAISS labels; columns by slot hold the image
  id, product id and filter attributes. Deleted and superseded slots and filters become one
  ``IDSelectorBitmap`` passed inside the search through ``SearchParameters.sel``; exact IVF
  bulks drop dead vectors from their lists at once instead, and flat bulks overwrite them
  with NaN, which never ranks, so their unfiltered searches need no selector. A graph
  scans its rows through the bitmap instead of walking when few vectors match (see
  `_scans_rows`).
- Fresh upserts go to ``delta``: exact flat before the bulk is trained and for HNSW (a
  compressed HNSW keeps its fresh rows as bfloat16; a live replica folds a plain HNSW's
  delta into the graph a chunk at a time, see ``fold_delta``). Trained IVF bulks take
  them straight into their own lists instead (no retraining): a delta probed through the
  same lists would find the same vectors at the price of a second scan and a merge. A
  compressed IVF keeps its fresh vectors' exact rows in RAM right after the re-rank
  file's, so the same ``IndexRefine`` re-scores them (see ``rerank.py``).
  ``compact()`` folds the delta into ``bulk`` and drops removed vectors.
- Compressed shards (PQ) re-rank their top candidates exactly from a 16-bit memory-mapped
  file, inside FAISS (an ``IndexRefine`` over the bulk, see ``rerank.py``).
- A readers-writer lock lets searches run concurrently (FAISS releases the GIL) and never
  see half an update. Per-request parameters are arguments, never set on the shared index.
- An unfiltered single query at the shard's own knobs (what the RPC server sends, most of
  the traffic) runs a plan made once per version, knobs and k: the one FAISS call that
  answers it and the columns to group by (`_plain_query`); everything else, and that
  query's later rounds when its hits hold fewer than k products, takes the general path.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import faiss
import numpy as np

from workers.index import snapshot as snap
from workers.index.columns import ALL_COLUMNS, Columns, IdLookup
from workers.index.depth import DepthTable
from workers.index.faiss_calls import (
    METRIC,
    merged,
    new_index,
    preassigned,
    refine_params,
    search_with,
)
from workers.index.footprint import bulk_bytes, delta_bytes
from workers.index.grouping import padded, place_hits, top_products
from workers.index.ivf_lists import relabel_ivf
from workers.index.rerank import BFLOAT16, RerankStore, from_rows, to_bfloat16
from workers.index.rwlock import RWLock
from workers.index.selection import SUBSET_COST, Selection, Selections
from workers.index.spec import IndexSpec, SearchParams, choose_spec, default_params, min_train
from workers.index.types import SearchFilter, SearchResult, VectorAttrs
from workers.index.vectors import unit_queries, unit_rows

logger = logging.getLogger(__name__)

REBUILD_FRACTION = 0.2  # graph indexes are rebuilt to drop removed vectors past this fraction
_CACHED_PARAMS = 64  # search parameters of recent (bitmap, knob) pairs, see `_cached_params`
# what `swap_bulk` keeps of the receiving shard (the caches are keyed by its version)
_KEPT_BY_SWAP = frozenset(
    {"dim", "model", "work_dir", "rebuild_fraction", "_lock", "_writer", "_version"}
    | {"_selections", "_params_cache", "_plain"}
)
FOLD_CHUNK = 64  # delta vectors a graph takes per write lock (~20 ms), see `fold_delta`
_PLAIN_PLANS = 128  # plans of unfiltered single queries kept per version (one per k asked)
_UNPLANNED = object()  # a k with no plan made yet (None: one FAISS call cannot answer it)


class _PlainQuery(NamedTuple):
    """How an unfiltered single query for k results at the shard's own knobs runs when one
    FAISS call answers it (see `Shard._plain_query`)."""

    index: faiss.Index  # the bulk, or the re-rank over it
    faiss_params: faiss.SearchParameters
    fetch: int  # hits asked of FAISS: 2k, or every match when fewer
    bits: np.ndarray | None  # the live slots' bitmap, when removed ones are still indexed
    n_match: int
    params: SearchParams  # the knobs, scaled to k: what later rounds search with
    exhaustive: bool
    columns: tuple[np.ndarray, np.ndarray]  # product and image ids by slot
    # what `faiss_params` point into without owning it, held here (the caches they came
    # from may drop theirs at any search): the bulk's own parameters under a re-rank's;
    # `bits`, which their selector reads
    bulk_params: faiss.SearchParameters


class _PlainPlans(NamedTuple):
    """The plans of unfiltered single queries made for one version, knobs and depth table."""

    version: int
    params: SearchParams | None
    depths: DepthTable | None
    by_k: dict[int, _PlainQuery | None]


_NO_PLANS = _PlainPlans(-1, None, None, {})  # (never added to: its version is never current)


class Shard:
    """One shard of the vector index for one embedding model."""

    def __init__(
        self,
        dim: int,
        model: str,
        spec: IndexSpec | str = "auto",
        *,
        work_dir: Path | None = None,
        params: SearchParams | None = None,
        rebuild_fraction: float = REBUILD_FRACTION,
    ) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.dim = int(dim)
        self.model = str(model)
        self.spec = spec if isinstance(spec, IndexSpec) else choose_spec(0, dim, spec)
        self.params = params or default_params(self.spec)
        self.tune_report = {}
        self.rebuild_fraction = rebuild_fraction
        self.last_applied: str | None = None
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="shard-"))
        self._lock = RWLock()
        self._writer = threading.RLock()  # one writer at a time (compaction may be long)
        self._version = 0
        self._selections = Selections()  # of the current version
        self._params_cache: dict[tuple, tuple] = {}  # see `_cached_params`
        self._install(new_index(self.spec, self.dim), Columns(), 0, None)

    @property
    def tune_report(self) -> dict[str, object]:
        """What the tuner chose and measured (`tune.autotune`), kept in snapshots."""
        return self._tune_report

    @tune_report.setter
    def tune_report(self, report: dict[str, object]) -> None:
        self._tune_report = report
        self._depths = DepthTable.from_report(report)  # read by searches past the tuned k

    # ------------------------------------------------------------------ state

    def _install(
        self,
        bulk: faiss.Index,
        cols: Columns,
        n_bulk: int,
        rerank: RerankStore | None,
    ) -> None:
        """Replace the whole state (caller holds the write lock or owns the object)."""
        self._bulk = bulk
        self._ivf = faiss.try_extract_index_ivf(bulk)
        self._trained = bool(bulk.is_trained)  # asked by every search: SWIG costs a call
        compressed = rerank is not None or self.spec.rerank
        self._removes_in_place = self._map_ids(self._ivf, compressed) or self._tombstones()
        self._cols = cols
        self._n_bulk = n_bulk
        if self._tombstones():  # a bulk whose dead rows are still vectors (earlier versions)
            self._remove_in_place(np.flatnonzero(~cols["alive"][: bulk.ntotal]))
        if self.spec.rerank and rerank is None:
            rerank = RerankStore.written(self.work_dir, self.dim)
        replaced = getattr(self, "_rerank", None)
        if replaced is not None and replaced is not rerank:
            replaced.close()  # its file; snapshots hold their own links
        self._rerank = rerank
        self._refine = rerank.refined(bulk) if rerank is not None else None
        self._graph_rows, self._graph_m = self._scannable_rows()
        self._gather = self._row_gatherer()
        self._lookup = IdLookup()
        self._lookup.rebuild(cols["image_ids"], cols["alive"])
        # a compressed IVF's fresh codes go into its lists, their rows after the file's
        self._fresh_in_bulk = rerank is not None and self._trained_ivf()
        self._reset_delta()
        self._version += 1
        self._plain = _NO_PLANS  # they hold the replaced indexes

    def _scannable_rows(self) -> tuple[faiss.Index | None, int]:
        """A graph's rows as a flat index over slots, for an exact scan through a bitmap
        (see `_scans_rows`): its own flat storage, or a compressed graph's re-rank rows;
        and its links per node. (None, 0) for other kinds."""
        graph = faiss.downcast_index(self._bulk)
        if not isinstance(graph, faiss.IndexHNSW):
            return None, 0
        if self._rerank is not None:
            return self._rerank.index, graph.hnsw.nb_neighbors(1)
        storage = faiss.downcast_index(graph.storage)
        if not isinstance(storage, faiss.IndexFlat):
            return None, 0
        return storage, graph.hnsw.nb_neighbors(1)

    def _row_gatherer(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """float32 rows of given bulk slots, in the space queries are scored in, for a
        scan of a rare filter's matches alone (see `_subset`); None where the bulk keeps no
        exact rows (codes only, or vectors behind a transform)."""
        if self._rerank is not None:
            return self._rerank.gather  # bfloat16 rows, the scores a re-rank would give
        graph_rows = self._graph_rows  # a graph's flat storage (see `_scannable_rows`)
        flat = graph_rows if graph_rows is not None else faiss.downcast_index(self._bulk)
        if isinstance(flat, faiss.IndexFlat):

            def rows_of_flat(slots: np.ndarray) -> np.ndarray:
                n = flat.ntotal  # read per call: an add may move the rows
                return faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)[slots]

            return rows_of_flat
        if isinstance(flat, faiss.IndexIVFFlat) and self._removes_in_place:
            return flat.reconstruct_batch  # through the label -> list position map
        return None

    def _reset_delta(self) -> None:
        # Compressed shards keep their fresh vectors' exact rows as bfloat16 (like the
        # re-rank file): ~1 KB a fresh vector, not 4.
        if self._fresh_in_bulk:
            assert self._rerank.fresh == 0, "a re-rank store installed with fresh rows"
            self._delta_vectors = self._rerank.fresh_rows
        else:
            row_dtype = np.uint16 if self.spec.rerank else np.float32
            self._delta_vectors = np.zeros((0, self.dim), dtype=row_dtype)
        self._n_delta = 0
        self._delta_shares_lists = False  # an IVF delta probed with the bulk's assignment
        if self._trained_ivf() and not self.spec.rerank:
            ivf = self._ivf
            self._delta = faiss.IndexIVFFlat(ivf.quantizer, ivf.d, ivf.nlist, METRIC)
            self._delta.is_trained = True
            self._delta_shares_lists = True
        else:
            self._delta = self._exact_delta()

    def _exact_delta(self) -> faiss.Index:
        """An empty exact delta, scanned whole: bfloat16 for a trained compressed graph (a
        compressed IVF takes fresh vectors into its lists and never fills it)."""
        if self.spec.rerank and self._trained:
            qtype = faiss.ScalarQuantizer.QT_bf16
            return faiss.IndexIDMap(faiss.IndexScalarQuantizer(self.dim, qtype, METRIC))
        return faiss.IndexIDMap(faiss.IndexFlatIP(self.dim))

    @staticmethod
    def _map_ids(ivf: faiss.IndexIVF | None, compressed: bool) -> bool:
        """Give a trained IVF-Flat bulk a hash map from label to list position (rebuilt
        here: compaction rewrites the lists), so deletes remove vectors from their lists at
        once. Its unfiltered searches then need no selector: a bitmap test per scanned
        vector cost ~4% of a 1M-vector query. `footprint.MAP_BYTES` a vector, beside 2 KB of
        floats; compressed shards keep the selector and their memory budget."""
        if ivf is None or compressed or not ivf.is_trained:
            return False
        if not isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFlat):
            return False
        ivf.set_direct_map_type(faiss.DirectMap.NoMap)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        return True

    def _tombstones(self) -> bool:
        """Whether the bulk is flat and writes NaN over removed vectors instead of testing a
        selector in every search: FAISS keeps a candidate only when its score compares
        greater than the worst one kept, which a NaN score never does, in the scan and in
        the BLAS path alike (tested). Without a selector a flat scan is 7-15% cheaper and
        FAISS answers 20 or more queries at once with BLAS (64 queries on 20k vectors here:
        1.22 vs 1.75 ms a query); compaction drops the rows."""
        return self._ivf is None and self.spec.kind == "flat"

    def _remove_in_place(self, slots: np.ndarray) -> None:
        """Drop dead slots from a mapped IVF-Flat bulk (see `_map_ids`) or tombstone them
        in a flat one (see `_tombstones`)."""
        if not (self._removes_in_place and len(slots)):
            return
        if self._ivf is not None:
            self._ivf.remove_ids(faiss.IDSelectorArray(np.ascontiguousarray(slots, np.int64)))
            return
        n = self._bulk.ntotal
        if n:
            rows = faiss.rev_swig_ptr(self._bulk.get_xb(), n * self.dim).reshape(n, self.dim)
            rows[slots[slots < n]] = np.nan

    def _bulk_takes_fresh(self) -> bool:
        """Whether fresh vectors can go straight into the bulk (see `_append_fresh`)."""
        if not self._trained or self._rerank is not None:
            return False
        if self._ivf is not None:
            return isinstance(faiss.downcast_index(self._ivf), faiss.IndexIVFFlat)
        return self.spec.kind == "flat"

    def _delta_rows(self, rows: np.ndarray | slice) -> np.ndarray:
        """float32 vectors of delta rows (positions, not slots)."""
        kept = self._delta_vectors[rows]
        return from_rows(kept, BFLOAT16) if kept.dtype == np.uint16 else kept

    # ----------------------------------------------------------------- writes

    def upsert(
        self, ids: np.ndarray, vectors: np.ndarray, attrs: VectorAttrs, *, model: str | None = None
    ) -> None:
        """Insert or replace vectors by image id; a replaced vector is never returned again."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if model is not None and model != self.model:
            raise ValueError(f"vectors of model {model!r} cannot enter a {self.model!r} shard")
        vectors = unit_rows(vectors, self.dim)
        if len(vectors) != len(ids) or len(attrs) != len(ids):
            raise ValueError("ids, vectors and attrs must have the same length")
        if len(ids) == 0:
            return
        # the last occurrence of a repeated id wins, as if applied one by one
        _, last = np.unique(ids[::-1], return_index=True)
        keep = np.sort(len(ids) - 1 - last)
        if len(keep) != len(ids):
            ids, vectors = ids[keep], vectors[keep]
            attrs = VectorAttrs.build(
                attrs.product_ids[keep],
                attrs.category_ids[keep],
                attrs.prices[keep],
                attrs.in_stock[keep],
            )
        with self._writer, self._lock.write():
            old = self._lookup.find(ids, self._cols)
            old = old[old >= 0]
            self._cols.data["alive"][old] = False
            self._remove_in_place(old)
            slots = self._cols.append(ids, attrs)
            self._append_fresh(vectors, slots)
            self._lookup.add_recent(ids, slots)
            self._version += 1

    def _append_fresh(self, vectors: np.ndarray, slots: np.ndarray) -> None:
        """Fresh vectors (their slots are the newest) into the delta, or straight into an
        exact bulk: IVF-Flat and flat store vectors as they are, and the delta of an IVF is
        probed through the same lists, so adding to the bulk answers every search the same
        with one scan instead of two (the delta's scan and merge were ~20% of a single
        query) and without keeping each fresh vector twice."""
        if self._n_delta == 0 and self._bulk_takes_fresh():
            if self._ivf is not None:
                self._bulk.add_with_ids(vectors, slots)
            else:  # positional labels: label == slot while the bulk holds every slot
                assert self._bulk.ntotal == self._n_bulk == slots[0], "positional bulk out of step"
                self._bulk.add(vectors)
            self._n_bulk = int(slots[-1]) + 1
            return
        self._keep_fresh_rows(vectors)
        if self._fresh_in_bulk:  # found by the bulk's own scan, re-scored from the rows kept
            self._bulk.add_with_ids(vectors, slots)
        else:  # only a delta probed through the bulk's lists lives in their (rotated) space
            fresh = self._to_ivf_space(vectors) if self._delta_shares_lists else vectors
            self._delta.add_with_ids(fresh, slots)

    def _keep_fresh_rows(self, vectors: np.ndarray) -> None:
        needed = self._n_delta + len(vectors)
        if self._fresh_in_bulk:  # after the re-rank file's rows, where IndexRefine reads
            if self._rerank.append(to_bfloat16(vectors)):
                self._refine = self._rerank.refined(self._bulk)  # the rows moved
            self._delta_vectors = self._rerank.fresh_rows
            self._n_delta = needed
            return
        rows = self._delta_vectors
        if needed > len(rows):
            grown = np.zeros((max(needed, 2 * len(rows), 256), self.dim), rows.dtype)
            grown[: self._n_delta] = rows[: self._n_delta]
            self._delta_vectors = grown
        stored = to_bfloat16(vectors) if rows.dtype == np.uint16 else vectors
        self._delta_vectors[self._n_delta : needed] = stored
        self._n_delta = needed

    def _trained_ivf(self) -> bool:
        return self._ivf is not None and self._trained

    def delete(self, ids: np.ndarray) -> None:
        """Remove vectors by image id (unknown ids are ignored)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        with self._writer, self._lock.write():
            slots = self._lookup.find(ids, self._cols)
            slots = slots[slots >= 0]
            self._cols.data["alive"][slots] = False
            self._remove_in_place(slots)
            self._version += 1

    def fold_delta(self, max_vectors: int = FOLD_CHUNK) -> int:
        """Move up to `max_vectors` of the oldest delta vectors into a graph bulk (HNSW);
        the number moved. A graph insert costs ~0.3 ms a vector, so upserts stay cheap in
        the exact delta and a live replica folds it a chunk at a time, each under a short
        write lock, instead of scanning a growing delta on every query (1000 vectors:
        ~70 us) until a compaction folds it all at once. Other kinds fold nothing: their
        fresh vectors go into the bulk already or wait for compaction."""
        if not self._n_delta or not self._folds_delta():
            return 0
        with self._writer, self._lock.write():
            moved = min(int(max_vectors), self._n_delta)
            if moved <= 0 or not self._folds_delta():
                return 0
            assert self._bulk.ntotal == self._n_bulk, "positional bulk out of step"
            self._bulk.add(self._delta_rows(slice(0, moved)))  # labels: the next slots
            first = self._n_bulk
            self._delta.remove_ids(faiss.IDSelectorRange(first, first + moved))
            rows, kept = self._delta_vectors, self._n_delta - moved
            rows[:kept] = rows[moved : self._n_delta]
            self._n_bulk, self._n_delta = first + moved, kept
            self._version += 1
            return moved

    def _folds_delta(self) -> bool:
        return self.spec.kind == "hnsw" and self._rerank is None and self._ivf is None

    def compact(self, force_rebuild: bool = False) -> None:
        """Fold delta into bulk and physically drop removed vectors where that is cheap."""
        with self._writer, self._lock.write():
            cols = self._cols
            alive = cols["alive"]
            delta = self._delta_rows(slice(0, self._n_delta))
            bulk = self._bulk
            if not bulk.is_trained:
                train = np.ascontiguousarray(delta[alive[self._n_bulk :]])
                if len(train) < min_train(self.spec):
                    return  # too few vectors to train: everything stays exact in delta
                bulk.train(train)
                self._ivf = faiss.try_extract_index_ivf(bulk)
            if len(delta) and not self._fresh_in_bulk:
                slots = np.arange(self._n_bulk, cols.size, dtype=np.int64)
                if self._ivf is not None:
                    bulk.add_with_ids(delta, slots)
                else:  # positional labels: adding in slot order keeps label == slot
                    assert bulk.ntotal == self._n_bulk, "positional bulk out of step"
                    bulk.add(delta)
            n_dead = int(cols.size - alive.sum())
            cheap = self._ivf is not None or self.spec.kind == "flat"
            dead_fraction = n_dead / max(1, cols.size)
            keep = None
            if n_dead and (cheap or force_rebuild or dead_fraction > self.rebuild_fraction):
                keep = np.flatnonzero(alive)
            rerank = self._rerank
            if rerank is not None and (len(delta) or keep is not None):
                rerank = self._compacted_rows(keep)
            if keep is not None:
                bulk = self._dropped(bulk, keep, rerank)
                cols.keep(keep)
            self._install(bulk, cols, cols.size, rerank)

    def _compacted_rows(self, keep: np.ndarray | None) -> RerankStore:
        """The re-rank rows after compaction: the bulk's, then the delta's (as they are, in
        bfloat16), of the slots `keep` (all if None), renumbered from 0."""
        fresh = self._delta_vectors[: self._n_delta]
        bulk_keep = None
        if keep is not None:
            split = int(np.searchsorted(keep, self._n_bulk))
            bulk_keep, fresh = keep[:split], fresh[keep[split:] - self._n_bulk]
        return self._rerank.rewritten(bulk_keep, fresh)

    def _dropped(
        self, bulk: faiss.Index, keep: np.ndarray, rows: RerankStore | None
    ) -> faiss.Index:
        """Bulk holding only slots `keep`, renumbered 0..len(keep)-1 (`rows`: their re-rank
        rows, already renumbered)."""
        new_of_old = np.full(self._cols.size, -1, dtype=np.int64)
        new_of_old[keep] = np.arange(len(keep), dtype=np.int64)
        if self._ivf is not None:
            relabel_ivf(self._ivf, new_of_old)
            bulk.ntotal = self._ivf.ntotal
            return bulk
        if self.spec.kind == "flat":
            dead = np.flatnonzero(new_of_old < 0).astype(np.int64)
            bulk.remove_ids(faiss.IDSelectorBatch(dead))  # shifts: position == rank among kept
            return bulk
        if rows is not None:
            vectors = rows.gather(np.arange(rows.size))
        else:
            vectors = np.vstack([bulk.reconstruct_batch(b) for b in np.array_split(keep, 64)])
        fresh_index = new_index(self.spec, self.dim)
        if not fresh_index.is_trained:
            fresh_index.train(vectors)
        fresh_index.add(vectors)
        return fresh_index

    def swap_bulk(self, other: Shard) -> None:
        """Take over another shard's whole state atomically (a rebuilt and replayed index)."""
        if other.dim != self.dim or other.model != self.model:
            raise ValueError("cannot swap in a shard of another model or dimension")
        with self._writer, self._lock.write(), other._writer, other._lock.write():
            old_rerank = self._rerank
            # everything but the shard's own identity, locks and per-version caches: a
            # field copied by name is a field a later change forgets (a cached flag was)
            vars(self).update({k: v for k, v in vars(other).items() if k not in _KEPT_BY_SWAP})
            self._version += 1
            self._plain = _NO_PLANS  # they hold the replaced indexes
            if old_rerank is not None and old_rerank is not self._rerank:
                old_rerank.close()

    # ----------------------------------------------------------------- reads

    def search(
        self,
        queries: np.ndarray,
        k: int,
        filters: SearchFilter | None = None,
        params: SearchParams | None = None,
    ) -> SearchResult:
        """Top-k products per query (best image each), excluding removed ids, inside FAISS."""
        queries = unit_queries(queries, self.dim)
        if k <= 0:
            raise ValueError("k must be positive")
        nq = len(queries)
        with self._lock.read():
            if nq == 1 and params is None and (filters is None or filters.is_empty):
                plain = self._plain_query(k)  # most of the traffic: planned once per version
                if plain is not None:
                    hits = search_with(plain.index, queries, plain.fetch, plain.faiss_params)
                    meta = {"matches": plain.n_match}
                    result, found, _ = top_products(*hits, k, *plain.columns, meta)
                    if found == k:
                        return result
                    n_match, bits = plain.n_match, plain.bits
                    return self._search_one(
                        queries, k, bits, n_match, plain.params, plain.exhaustive, None, hits
                    )
            bits, n_match, slots = self._selection(filters)
            if n_match == 0:
                return padded(nq, k, {"matches": 0})
            base = self.params if params is None else params.merged_over(self.params)
            if filters is not None and not filters.is_empty:
                base = self.scaled_params(base, k, n_match / self._live_count())
            elif k > self._depths.k:  # (most requests skip the call)
                base = self.scaled_params(base, k)
            exhaustive = self.spec.kind == "flat" or self._scans_rows(bits, n_match, base)
            subset = None if slots is None else self._subset(slots, n_match, base, exhaustive)
            exhaustive = exhaustive or subset is not None  # every match scored: no retry
            search = self._search_one if nq == 1 else self._search_batch
            return search(queries, k, bits, n_match, base, exhaustive, subset)

    def _plain_query(self, k: int) -> _PlainQuery | None:
        """The plan of an unfiltered single query for `k` results at the shard's own knobs,
        made once per version, knobs and k (None: the query takes more than one FAISS call,
        or nothing matches). Making the general path's choices per query cost a 100k
        IVF1024,Flat shard ~10 us of a 50-100 us query, most of its distance to raw FAISS."""
        made = self._plain
        current = (self._version, self.params, self._depths)
        if (made.version, made.params, made.depths) != current:
            made = self._plain = _PlainPlans(*current, {})
        plans = made.by_k
        plan = plans.get(k, _UNPLANNED)  # one lookup: a concurrent search may clear them
        if plan is _UNPLANNED:
            if len(plans) >= _PLAIN_PLANS:
                plans.clear()
            plan = plans[k] = self._plan_plain(k)
        return plan

    def _plan_plain(self, k: int) -> _PlainQuery | None:
        """The choices `search` makes for an unfiltered single query, when `_search_slots`
        answers it with one FAISS call of the bulk (tests compare the two paths)."""
        bits, n_match, slots = self._selection(None)
        if n_match == 0 or slots is not None or not (self._trained and self._bulk.ntotal > 0):
            return None  # nothing to find, a gather of the few left, or no bulk yet
        params = self.params if k <= self._depths.k else self.scaled_params(self.params, k)
        exhaustive = self.spec.kind == "flat" or self._scans_rows(bits, n_match, params)
        if exhaustive and bits is not None and self._graph_rows is not None:
            return None  # a scan of the graph's rows
        searched = self._exhaustive(params) if exhaustive else params
        if self._trained_ivf():
            if self._n_delta and (self._delta_shares_lists or not self._fresh_in_bulk):
                return None  # a delta searched beside the bulk
            knob = int(searched.nprobe or 1)
        elif self._n_delta:
            return None
        else:
            knob = int(searched.ef_search or 64) if self.spec.kind == "hnsw" else 0
        fetch = min(n_match, 2 * k)
        bulk_params = self._search_params(bits, knob)
        index, faiss_params = self._bulk_call(fetch, bulk_params, searched.rerank_k)
        columns = (self._cols.data["product_ids"], self._cols.data["image_ids"])
        return _PlainQuery(
            index, faiss_params, fetch, bits, n_match, params, exhaustive, columns, bulk_params
        )

    def _search_batch(
        self,
        queries: np.ndarray,
        k: int,
        bits: np.ndarray | None,
        n_match: int,
        params: SearchParams,
        exhaustive: bool,
        subset: np.ndarray | None,
    ) -> SearchResult:
        """`search` of several queries: rounds over the queries still short of k products,
        fetching more images where products repeat, probing everything where the search
        missed matches."""
        out = padded(len(queries), k, {"matches": n_match})
        products, image_ids = self._cols.data["product_ids"], self._cols.data["image_ids"]
        todo = np.arange(len(queries))
        fetch = min(n_match, 2 * k)
        while len(todo):
            scores, slots = self._search_slots(
                queries[todo], fetch, bits, params, exhaustive, subset
            )
            counts = place_hits(out, todo, scores, slots, products, image_ids, k)
            short = counts < k
            if not short.any():
                break
            # several images per product: fetch more images; else the search missed matches
            grow = short & ((slots >= 0).sum(axis=1) >= fetch) & (fetch < n_match)
            deepen = short & ~grow & (not exhaustive)
            if not (grow.any() or deepen.any()):
                break
            todo = todo[grow | deepen]
            if grow.any():
                fetch = min(n_match, fetch * 4)
            if deepen.any():
                exhaustive = True
        return out

    def _search_one(
        self,
        query: np.ndarray,
        k: int,
        bits: np.ndarray | None,
        n_match: int,
        params: SearchParams,
        exhaustive: bool,
        subset: np.ndarray | None,
        first: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> SearchResult:
        """`search` of a single query (most of the traffic): the same rounds as the batch
        with the grouping of one row (`top_products`, compiled where built), where a
        batch's array operations would cost more than the FAISS search of a cheap query.
        `first`: the first round's hits, when the caller searched already."""
        products, image_ids = self._cols.data["product_ids"], self._cols.data["image_ids"]
        meta = {"matches": n_match}
        fetch = min(n_match, 2 * k)
        hits = first
        while True:
            if hits is None:
                hits = self._search_slots(query, fetch, bits, params, exhaustive, subset)
            result, found, valid = top_products(*hits, k, products, image_ids, meta)
            if found == k:
                return result
            if valid >= fetch and fetch < n_match:
                fetch = min(n_match, fetch * 4)  # several images per product: fetch more
            elif not exhaustive:
                exhaustive = True  # the search missed matches: probe everything
            else:
                return result
            hits = None

    def scaled_params(self, params: SearchParams, k: int, kept: float = 1.0) -> SearchParams:
        """The knobs a search for `k` results runs with under a filter keeping a fraction
        `kept` of the vectors (see `depth.py`): what benchmarks give raw FAISS."""
        return self._depths.scaled(params, k, kept, self.spec.nlist)

    def _scans_rows(self, bits: np.ndarray | None, n_match: int, params: SearchParams) -> bool:
        """Whether a graph search through a bitmap should scan the graph's rows instead:
        FAISS's graph search walks on until it holds efSearch matches, so a selective
        filter (efSearch scaled up, see `depth.py`) costs it ~4.6 us a unit of efSearch and
        can still miss some, while the scan tests the bitmap (~2.5 ns a row) and scores
        the matches only (~0.3 us each, from rows cold in cache): the scan is cheaper below
        about efSearch * M / 2 matches (100k HNSW32, 512-d: a 1% filter 0.46 ms by scan,
        21 ms by graph at recall 0.97; a 10% one 3.0 ms either way, recall 1 vs 0.88)."""
        if bits is None or self._graph_rows is None:
            return False
        return 2 * n_match <= int(params.ef_search or 64) * self._graph_m

    def _subset(
        self, slots: np.ndarray, n_match: int, params: SearchParams, exhaustive: bool
    ) -> np.ndarray | None:
        """The matching slots when scoring their rows alone beats the search: a rare
        filter's matches are gathered and scored (~0.3-0.4 us each) where a bitmap scan
        tests every row (~5 ns) and an IVF probes every list of its scaled nprobe
        (filter_bench, 512-d, shard against raw FAISS through the bitmap: 1M IVF4096 0.1%
        0.63 vs 3.44 ms, 0.3% 1.49 vs 2.01; 100k IVF1024 1% 0.52 vs 0.78). A graph walk
        is weighed against its row scan first (`_scans_rows`); past it only a scan is."""
        if self._gather is None or not (self._trained and self._n_bulk):
            return None
        if self._graph_rows is not None and not exhaustive:
            return None  # a walk of the graph, cheaper than a scan of its rows
        visited = float(self._n_bulk)
        if self._ivf is not None and not exhaustive:
            visited *= min(1.0, int(params.nprobe or 1) / self._ivf.nlist)
        return slots if SUBSET_COST * n_match <= visited else None

    def _exhaustive(self, params: SearchParams) -> SearchParams:
        return SearchParams(
            nprobe=self.spec.nlist or params.nprobe,
            ef_search=max(4 * (params.ef_search or 64), 1024) if params.ef_search else None,
            rerank_k=params.rerank_k,
        )

    def _selection(self, flt: SearchFilter | None) -> Selection:
        """The bitmap a search must test (None: every vector in the indexes qualifies, as in
        an unfiltered search of a shard that removes in place, or of one with nothing
        removed, e.g. just compacted), how many vectors match, and which when few do. A
        selector costs even when it passes everything: ~4% of an IVF scan, 7-15% of a flat
        one at 20k here."""
        if flt is None or flt.is_empty:
            everything = self._selections.live(self._version, self._cols)
            if self._removes_in_place or everything.n_match == self._cols.size:
                return everything
        return self._allowed(flt)

    def _live_count(self) -> int:
        return self._selections.live(self._version, self._cols).n_match

    def _allowed(self, flt: SearchFilter | None) -> Selection:
        return self._selections.matching(self._version, self._cols, flt)

    def _search_slots(
        self,
        queries: np.ndarray,
        fetch: int,
        bits: np.ndarray | None,
        params: SearchParams,
        exhaustive: bool = False,
        subset: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top `fetch` (score, slot) over bulk and delta, through the bitmap selector if any;
        `exhaustive`: visit every match (all lists; a graph's rows scanned when a bitmap
        names the matches, else a deep graph search); `subset`: the matching slots, whose
        bulk rows are scored alone (see `_subset`)."""
        if subset is not None:
            return self._subset_and_delta(queries, fetch, bits, subset)
        if exhaustive:
            params = self._exhaustive(params)
        parts = []
        bulk_ready = self._trained and self._bulk.ntotal > 0
        if self._trained_ivf():
            nprobe = int(params.nprobe or 1)
            ivf_params = self._search_params(bits, nprobe)
            if self._n_delta and self._delta_shares_lists:  # one coarse assignment for both
                xq = self._to_ivf_space(queries)
                coarse_d, coarse_i = self._coarse(xq, nprobe)
                if bulk_ready:
                    parts.append(preassigned(self._ivf, xq, fetch, coarse_i, coarse_d, ivf_params))
                parts.append(preassigned(self._delta, xq, fetch, coarse_i, coarse_d, ivf_params))
            else:
                if bulk_ready:  # one FAISS call: coarse assignment (and re-rank) inside
                    parts.append(self._bulk_hits(queries, fetch, ivf_params, params.rerank_k))
                if self._n_delta and not self._fresh_in_bulk:  # an exact delta, scanned
                    parts.append(self._delta_scan(queries, fetch, ivf_params.sel))
        else:
            knob = int(params.ef_search or 64) if self.spec.kind == "hnsw" else 0
            bulk_params = self._search_params(bits, knob)
            if exhaustive and bits is not None and self._graph_rows is not None:
                rows_params = self._search_params(bits, None)
                parts.append(search_with(self._graph_rows, queries, fetch, rows_params))
            elif bulk_ready:
                parts.append(self._bulk_hits(queries, fetch, bulk_params, params.rerank_k))
            if self._n_delta:
                parts.append(self._delta_scan(queries, fetch, bulk_params.sel))
        return merged(parts, len(queries), fetch)

    def _subset_and_delta(
        self, queries: np.ndarray, fetch: int, bits: np.ndarray | None, subset: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top `fetch` (score, slot) of the bulk rows of `subset` (sorted slots), scored
        exactly, and of the delta through the bitmap."""
        in_bulk = self._n_bulk + (self._n_delta if self._fresh_in_bulk else 0)
        slots = subset[: int(np.searchsorted(subset, in_bulk))]
        nq = len(queries)
        scores = np.full((nq, fetch), -np.inf, dtype=np.float32)
        labels = np.full((nq, fetch), -1, dtype=np.int64)
        if len(slots):
            rows = np.ascontiguousarray(self._gather(slots), dtype=np.float32)
            found = min(fetch, len(slots))
            scores[:, :found], at = faiss.knn(queries, rows, found, metric=METRIC)
            labels[:, :found] = np.where(at >= 0, slots[np.maximum(at, 0)], -1)
        parts = [(scores, labels)]
        if self._n_delta and not self._fresh_in_bulk:
            parts.append(self._delta_scan(queries, fetch, self._search_params(bits, None).sel))
        return merged(parts, nq, fetch)

    def _selector(self, bits: np.ndarray | None) -> faiss.IDSelector | None:
        """A selector over a packed bitmap of slots. FAISS takes its length in bytes: an id
        past them is never a member (a row scan may reach rows past the last slot)."""
        return None if bits is None else faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))

    def _search_params(self, bits: np.ndarray | None, knob: int | None) -> faiss.SearchParameters:
        """The bulk's search parameters with a bitmap selector over `bits` (if any) and its
        knob (an IVF's nprobe, a graph's efSearch), made once per filter bitmap and knob:
        SWIG objects cost ~10 us each to build, more on a cache-cold path (building the
        selector and HNSW parameters per call cost a 100k HNSW shard ~20 us a query). FAISS
        only reads them (but an IDMap delta writes its own selector in: see `_delta_scan`)."""
        return self._cached_params((self._version, id(bits), knob), bits, self._made_params)

    def _made_params(self, bits: np.ndarray | None, knob: int | None) -> faiss.SearchParameters:
        """`knob` None: plain parameters, for a scan of rows (see `_scannable_rows`)."""
        sel = self._selector(bits)
        graph = None
        if knob is None:
            made = faiss.SearchParameters()
        elif self._ivf is not None:
            made = faiss.SearchParametersIVF(nprobe=knob)
            graph = self._graph_params(knob)
            if graph is not None:
                made.quantizer_params = graph
        elif self.spec.kind == "hnsw":
            made = faiss.SearchParametersHNSW(efSearch=knob)
        else:
            made = faiss.SearchParameters()
        if sel is not None:
            made.sel = sel
        made.referenced_objects = [sel, graph]  # `made` does not own them
        return made

    def _cached_params(
        self, key: tuple, source: object, make: Callable[..., faiss.SearchParameters]
    ) -> faiss.SearchParameters:
        """`make(source, *key[2:])`, once per key within a version of the shard. The entry
        holds `source` (a bitmap, or the parameters a re-rank wraps) alive, so the id in
        its key is not reused while cached."""
        cached = self._params_cache.get(key)
        if cached is not None:
            return cached[1]
        cache = self._params_cache
        if len(cache) >= _CACHED_PARAMS or any(k[0] != self._version for k in cache):
            cache = self._params_cache = {}
        made = make(source, *key[2:])
        cache[key] = (source, made)
        return made

    def _delta_scan(
        self, queries: np.ndarray, fetch: int, sel: faiss.IDSelector | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top `fetch` of an exact (IDMap) delta. Its parameters are made per call:
        IndexIDMap swaps its own selector into the ones it is given while it searches, so
        parameters shared with concurrent searches would race."""
        if sel is None:
            return search_with(self._delta, queries, fetch, None)
        params = faiss.SearchParameters()
        params.sel = sel
        return search_with(self._delta, queries, fetch, params)

    def _coarse(self, xq: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """The nprobe nearest lists; a graph quantizer explores at least 2*nprobe nodes."""
        return self._ivf.quantizer.search(xq, nprobe, params=self._graph_params(nprobe))

    def _graph_params(self, nprobe: int) -> faiss.SearchParametersHNSW | None:
        """A graph coarse quantizer explores at least 2*nprobe nodes (None: flat quantizer)."""
        if not isinstance(faiss.downcast_index(self._ivf.quantizer), faiss.IndexHNSW):
            return None
        return faiss.SearchParametersHNSW(efSearch=max(64, 2 * nprobe))

    def _bulk_hits(
        self, queries: np.ndarray, fetch: int, params: faiss.SearchParameters, rerank_k: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top `fetch` (score, slot) of the bulk."""
        index, index_params = self._bulk_call(fetch, params, rerank_k)
        return search_with(index, queries, fetch, index_params)

    def _bulk_call(
        self, fetch: int, params: faiss.SearchParameters, rerank_k: int | None
    ) -> tuple[faiss.Index, faiss.SearchParameters]:
        """The index and parameters a search of the bulk for `fetch` hits calls: a
        compressed bulk's hits come re-ranked, inside FAISS, from its best
        max(fetch, rerank_k) candidates by code."""
        if self._refine is None:
            return self._bulk, params
        candidates = max(fetch, rerank_k or 0)
        key = (self._version, id(params), candidates, fetch)
        return self._refine, self._cached_params(key, params, refine_params)

    def _to_ivf_space(self, x: np.ndarray) -> np.ndarray:
        """Apply the bulk's pre-transform chain (OPQ rotation) when the delta is an IVF."""
        if not isinstance(self._bulk, faiss.IndexPreTransform) or self._ivf is None:
            return x
        if not self._trained:
            return x
        for i in range(self._bulk.chain.size()):
            x = self._bulk.chain.at(i).apply(x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def selection_of(self, image_ids: np.ndarray) -> Selection:
        """The live vectors among `image_ids`, for `search_images`: a filter the tuner
        draws at random, as attributes cannot."""
        with self._lock.read():
            slots = self._lookup.find(np.asarray(image_ids, dtype=np.int64), self._cols)
            mask = np.zeros(self._cols.size, dtype=bool)
            mask[slots[slots >= 0]] = True
            return Selection(np.packbits(mask, bitorder="little"), int(np.count_nonzero(mask)))

    def search_images(
        self,
        queries: np.ndarray,
        k: int,
        params: SearchParams | None = None,
        selection: Selection | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ungrouped top-k (scores, image ids), through `selection` if given (made by
        `selection_of` since the last write): what the tuner and benchmarks measure."""
        queries = unit_queries(queries, self.dim)
        with self._lock.read():
            bits = (self._selection(None) if selection is None else selection).bits
            p = (params or SearchParams()).merged_over(self.params)
            scores, slots = self._search_slots(queries, k, bits, p)
            ids = np.where(slots >= 0, self._cols.data["image_ids"][np.maximum(slots, 0)], -1)
            return np.where(slots >= 0, scores, np.float32(-np.inf)), ids.astype(np.int64)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Whether each image id is live in the shard."""
        with self._lock.read():
            return self._lookup.find(np.asarray(ids, dtype=np.int64), self._cols) >= 0

    def ids(self) -> np.ndarray:
        """All live image ids (sorted), for reconciliation against the database."""
        with self._lock.read():
            return np.sort(self._cols["image_ids"][self._cols["alive"]].astype(np.int64))

    def live_rows(self) -> tuple[np.ndarray, VectorAttrs]:
        """Every live image id (sorted, int64) with its filter attributes, for reconciliation
        (`workers.index.digest`). Copies, taken under the read lock: writes may go on."""
        with self._lock.read():
            slots = np.flatnonzero(self._cols["alive"])
            ids = self._cols.data["image_ids"][slots].astype(np.int64)
            attrs = self._cols.attrs(slots)
        order = np.argsort(ids, kind="stable")
        return ids[order], attrs.take(order)

    def attrs_of(self, ids: np.ndarray) -> VectorAttrs:
        """Attributes of live image ids (raises KeyError if one is absent)."""
        with self._lock.read():
            slots = self._lookup.find(np.asarray(ids, dtype=np.int64), self._cols)
            if (slots < 0).any():
                raise KeyError(f"ids not in shard: {np.asarray(ids)[slots < 0][:5].tolist()}")
            return self._cols.attrs(slots)

    @property
    def delta_size(self) -> int:
        return self._n_delta

    @property
    def n_vectors(self) -> int:
        """Live vectors (cheap; ``stats()`` also measures memory)."""
        return self._live_count()

    def stats(self) -> dict[str, object]:
        with self._lock.read():
            alive = int(self._cols["alive"].sum())
            slots = self._cols.size
            return {
                "model": self.model,
                "dim": self.dim,
                "spec": self.spec.factory,
                "rerank": self.spec.rerank,
                "params": self.params.to_dict(),
                "tune": self.tune_report,
                "vectors": alive,
                "slots": slots,
                "bulk_size": self._n_bulk,
                "delta_size": self._n_delta,
                "fresh_in_bulk": self._fresh_in_bulk,  # a compressed IVF's: cost RAM only
                "removed": slots - alive,
                "removed_fraction": (slots - alive) / slots if slots else 0.0,
                "last_applied": self.last_applied,
                "memory_bytes": self.memory_bytes(),
                "rerank_disk_bytes": self._rerank.disk_bytes if self._rerank else 0,
            }

    def memory_bytes(self) -> int:
        """Resident bytes: FAISS index + delta + columns + id lookup + cached filter bitmaps
        (not the re-rank file, which stays on disk)."""
        total = self._cols.nbytes + self._lookup.order.nbytes + self._delta_vectors.nbytes
        total += self._selections.nbytes
        total += delta_bytes(self._delta)
        total += bulk_bytes(self._bulk, self._ivf, self._removes_in_place)
        return total

    # ------------------------------------------------------------ persistence

    def snapshot(self, directory: Path, log_position: str) -> Path:
        """Write an atomic, checksummed snapshot under `directory`; keep the previous one."""
        temp, final = snap.new_temp_dir(Path(directory))
        known: dict[str, str] = {}
        with self._writer, self._lock.read():
            faiss.write_index(self._bulk, str(temp / "bulk.faiss"))
            arrays = {f"col_{n}": a for n, a in self._cols.to_arrays().items()}
            arrays["delta_vectors"] = self._delta_rows(slice(0, self._n_delta))
            np.savez(temp / "columns.npz", allow_pickle=False, **arrays)
            rerank = self._rerank.link_into(temp) if self._rerank else None
            if rerank is not None:
                known[str(rerank["file"])] = str(rerank["sha256"])
            meta = {
                "format": 1,
                "log_position": log_position,
                "model": self.model,
                "dim": self.dim,
                "spec": self.spec.to_dict(),
                "params": self.params.to_dict(),
                "tune": self.tune_report,
                "n_bulk": self._n_bulk,
                "slots": self._cols.size,
                "vectors": int(self._cols["alive"].sum()),
                "rerank": rerank,
                "fresh_in_bulk": self._fresh_in_bulk,
            }
        json.dumps(meta)  # fail before renaming if something is not serialisable
        return snap.commit(temp, final, meta, known)

    @classmethod
    def load(cls, directory: Path, work_dir: Path | None = None) -> tuple[Shard, str]:
        """The newest valid snapshot (falling back to older ones) and the log id to replay after."""
        for path, meta in snap.valid_snapshots(Path(directory)):
            try:
                return cls._from_snapshot(path, meta, work_dir), str(meta["log_position"])
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                logger.warning("cannot load snapshot %s: %s", path, exc)
        raise FileNotFoundError(f"no valid snapshot under {directory}")

    @classmethod
    def load_dir(cls, path: Path, work_dir: Path, *, verify: bool = True) -> tuple[Shard, str]:
        """One snapshot folder (e.g. a verified copy of a store artifact) and its log position."""
        meta = snap.read_meta(Path(path), verify=verify)
        return cls._from_snapshot(Path(path), meta, work_dir), str(meta["log_position"])

    @classmethod
    def _from_snapshot(cls, path: Path, meta: dict, work_dir: Path | None) -> Shard:
        spec = IndexSpec.from_dict(meta["spec"])
        work = Path(work_dir) if work_dir else Path(path).parent / "work"
        shard = cls(
            int(meta["dim"]),
            str(meta["model"]),
            spec,
            work_dir=work,
            params=SearchParams.from_dict(meta["params"]),
        )
        rerank = None
        try:
            shard.tune_report = dict(meta.get("tune") or {})
            bulk = faiss.read_index(str(path / "bulk.faiss"))
            with np.load(path / "columns.npz", allow_pickle=False) as data:
                cols = Columns.from_arrays({n: data[f"col_{n}"] for n in ALL_COLUMNS})
                delta = np.ascontiguousarray(data["delta_vectors"], dtype=np.float32)
            n_bulk = int(meta["n_bulk"])
            if cols.size != n_bulk + len(delta):
                raise ValueError("snapshot columns and delta do not add up")
            if spec.rerank:
                # snapshots of earlier versions list raw segments under "rerank_segments"
                described = meta["rerank"] if "rerank" in meta else meta["rerank_segments"]
                rerank = RerankStore.from_description(path, described, shard.dim, work)
            shard._install(bulk, cols, n_bulk, rerank)
            if meta.get("fresh_in_bulk") is True:  # the bulk file holds their codes
                shard._keep_fresh_rows(delta)
            elif len(delta):
                shard._append_fresh(delta, np.arange(n_bulk, cols.size, dtype=np.int64))
        except BaseException:  # no re-rank file of a failed load stays in the work dir
            for store in (rerank, shard._rerank):
                if store is not None:
                    store.close()
            raise
        shard.last_applied = str(meta["log_position"])
        return shard
