"""Exact IVF (`IVF{nlist},Flat`, with a flat or graph coarse quantizer).

Until it is trained (a new shard, before its first build or compaction with enough
vectors) every vector waits exact in a delta. Once trained, fresh vectors go straight
into their lists (no retraining) and a hash map from label to list position lets removed
vectors leave their lists at once: unfiltered searches then need no selector (a bitmap
test per scanned vector cost ~4% of a 1M-vector query), at `footprint.MAP_BYTES` a
vector beside 2 KB of floats. A compaction only renumbers the slots: it copies the lists
with new labels, sharing nothing with the live index but a copy of the centroids."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from workers.index.backends.base import (
    Backend,
    Hits,
    ReadLock,
    chunks,
    new_of_old,
    score_rows,
    search_params,
)
from workers.index.backends.delta import Delta
from workers.index.faiss_calls import METRIC, merged, new_index, search_with
from workers.index.footprint import bulk_bytes
from workers.index.gpu import train_index
from workers.index.ivf_lists import relabeled_lists
from workers.index.spec import IndexSpec, SearchParams, min_train

BULK_FILE = "bulk.faiss"


class IvfFlatBackend:
    def __init__(self, dim: int, spec: IndexSpec, index: faiss.Index | None = None) -> None:
        self.dim = dim
        self.spec = spec
        self.index = new_index(spec, dim) if index is None else index
        self.ivf = faiss.extract_index_ivf(self.index)
        self.trained = bool(self.index.is_trained)
        self._end = int(self.ivf.ntotal)  # labels 0..ntotal-1 (a load sets its own)
        self.delta = Delta(dim, self._end, bfloat16=False)
        graph = isinstance(faiss.downcast_index(self.ivf.quantizer), faiss.IndexHNSW)
        self._graph_quantizer = graph
        if self.trained:  # relabelled or loaded lists: the map is made again
            self.ivf.set_direct_map_type(faiss.DirectMap.NoMap)
            self.ivf.set_direct_map_type(faiss.DirectMap.Hashtable)

    @property
    def removes_in_place(self) -> bool:
        return self.trained

    @property
    def n_bulk(self) -> int:
        return self._end

    @property
    def n_fresh(self) -> int:
        return self.delta.size

    def add(self, vectors: np.ndarray, slots: np.ndarray) -> None:
        if self.trained and self.delta.size == 0:
            self.index.add_with_ids(vectors, np.ascontiguousarray(slots, dtype=np.int64))
            self._end = int(slots[-1]) + 1
            self.delta.start = self._end
        else:
            self.delta.add(vectors, slots)

    def remove(self, slots: np.ndarray) -> None:
        in_bulk = slots[slots < self._end]
        if self.trained and len(in_bulk):
            self.ivf.remove_ids(faiss.IDSelectorArray(np.ascontiguousarray(in_bulk, np.int64)))

    def search(
        self,
        queries: np.ndarray,
        fetch: int,
        bits: np.ndarray | None,
        params: SearchParams,
        exhaustive: bool,
    ) -> Hits:
        parts = []
        if self.trained and self.ivf.ntotal:
            nprobe = int(params.nprobe or 1)
            ef = max(64, 2 * nprobe) if self._graph_quantizer else None
            parts.append(
                search_with(
                    self.index, queries, fetch, search_params(bits, nprobe, quantizer_ef=ef)
                )
            )
        if self.delta.size:
            parts.append(self.delta.search(queries, fetch, bits))
        return merged(parts, len(queries), fetch)

    def starts_exhaustive(
        self, bits: np.ndarray | None, n_match: int, params: SearchParams
    ) -> bool:
        return False

    def gather_cost(self, params: SearchParams, exhaustive: bool) -> float | None:
        if not (self.trained and self._end):
            return None
        share = 1.0 if exhaustive else min(1.0, int(params.nprobe or 1) / self.ivf.nlist)
        return self._end * share

    def score_subset(
        self, queries: np.ndarray, fetch: int, bits: np.ndarray | None, slots: np.ndarray
    ) -> Hits:
        in_bulk = slots[: int(np.searchsorted(slots, self._end))]
        parts = [score_rows(queries, self.rows(in_bulk), in_bulk, fetch)]
        if self.delta.size:
            parts.append(self.delta.search(queries, fetch, bits))
        return merged(parts, len(queries), fetch)

    def rows(self, slots: np.ndarray) -> np.ndarray:
        slots = np.asarray(slots, dtype=np.int64)
        out = np.empty((len(slots), self.dim), dtype=np.float32)
        fresh = slots >= self.delta.start
        if fresh.any():
            out[fresh] = self.delta.rows(slots[fresh])
        if (~fresh).any():
            out[~fresh] = self.ivf.reconstruct_batch(np.ascontiguousarray(slots[~fresh]))
        return out

    def fold(self, max_vectors: int) -> int:
        return 0

    def compacted(
        self, keep: np.ndarray, n_slots: int, read: ReadLock, rebuild: bool
    ) -> tuple[Backend, np.ndarray] | None:
        if not self.trained:
            if len(keep) < min_train(self.spec):
                return None  # too few vectors to train: everything stays exact
            rows = np.vstack([np.zeros((0, self.dim), np.float32), *chunks(keep, read, self.rows)])
            index = new_index(self.spec, self.dim)
            train_index(index, rows)
            index.add_with_ids(rows, np.arange(len(keep), dtype=np.int64))
            return IvfFlatBackend(self.dim, self.spec, index), keep
        if len(keep) == n_slots:
            return None  # nothing removed: no slot to drop
        if isinstance(self.index, faiss.IndexPreTransform):
            raise NotImplementedError("an exact IVF behind a transform is compacted by a build")
        lists, total = relabeled_lists(self.ivf, new_of_old(n_slots, keep), read)
        quantizer = faiss.clone_index(self.ivf.quantizer)  # trained once, never written
        index = faiss.IndexIVFFlat(quantizer, self.dim, self.ivf.nlist, METRIC)
        index.own_fields = True
        quantizer.this.disown()
        index.replace_invlists(lists, True)
        lists.this.disown()
        index.ntotal = total
        return IvfFlatBackend(self.dim, self.spec, index), keep

    def memory_bytes(self) -> int:
        return bulk_bytes(self.index, self.ivf, self.trained) + self.delta.nbytes

    def save(self, directory: Path) -> dict[str, object]:
        faiss.write_index(self.index, str(directory / BULK_FILE))
        return {"n_bulk": self._end, "delta_vectors": self.delta.rows()}

    @classmethod
    def load(
        cls, directory: Path, dim: int, spec: IndexSpec, n_bulk: int, alive: np.ndarray
    ) -> IvfFlatBackend:
        index = faiss.read_index(str(directory / BULK_FILE))
        backend = cls(dim, spec, index)
        backend._end = backend.delta.start = n_bulk
        dead = np.flatnonzero(~alive[:n_bulk])
        if backend.trained and len(dead):  # earlier versions kept them in the lists
            backend.remove(dead)
        return backend

    def close(self) -> None:
        pass
