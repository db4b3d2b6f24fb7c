"""Compressed IVF (`OPQ{m},IVF{nlist},PQ{m}` and other coded IVFs) re-ranked exactly.

A code only ranks candidates roughly; their exact scores come from bfloat16 rows in a
memory-mapped file, inside FAISS (an ``IndexRefine`` over the bulk, see ``rerank.py``).
Once trained, fresh vectors' codes go into their lists and their rows are kept in RAM
right after the file's, so the same re-rank scores them; removed vectors stay in the lists
behind the search's bitmap until a compaction drops them. The compaction works on a copy
(codes are small: 40 bytes a vector at PQ32) and writes a new re-rank file from the old
one's rows, both while searches and writes go on."""

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
from workers.index.faiss_calls import merged, new_index, refine_params, search_with
from workers.index.footprint import bulk_bytes
from workers.index.gpu import train_index
from workers.index.ivf_lists import relabel_ivf
from workers.index.rerank import RerankStore, to_bfloat16
from workers.index.spec import IndexSpec, SearchParams, min_train

BULK_FILE = "bulk.faiss"


class CompressedIvfBackend:
    removes_in_place = False

    def __init__(
        self,
        dim: int,
        spec: IndexSpec,
        work_dir: Path,
        index: faiss.Index | None = None,
        rerank: RerankStore | None = None,
    ) -> None:
        self.dim = dim
        self.spec = spec
        self.work_dir = work_dir
        self.index = new_index(spec, dim) if index is None else index
        self.ivf = faiss.extract_index_ivf(self.index)
        self.trained = bool(self.index.is_trained)
        self.rerank = RerankStore.written(work_dir, dim) if rerank is None else rerank
        self.refine = self.rerank.refined(self.index)
        self.delta = Delta(dim, self.rerank.size, bfloat16=True)  # only while untrained
        self._graph_quantizer = isinstance(
            faiss.downcast_index(self.ivf.quantizer), faiss.IndexHNSW
        )

    @property
    def n_bulk(self) -> int:
        return self.rerank.size + self.rerank.fresh

    @property
    def n_fresh(self) -> int:
        return self.rerank.fresh + self.delta.size

    def add(self, vectors: np.ndarray, slots: np.ndarray) -> None:
        if not self.trained or self.delta.size:
            self.delta.add(vectors, slots)
            return
        if int(slots[0]) != self.n_bulk:
            raise ValueError("fresh slots must follow the re-rank rows")
        self.keep_rows(vectors)
        self.index.add_with_ids(vectors, np.ascontiguousarray(slots, dtype=np.int64))
        self.delta.start = self.n_bulk

    def keep_rows(self, vectors: np.ndarray) -> None:
        """Rows of fresh vectors whose codes the lists hold (or are given next)."""
        if self.rerank.append(to_bfloat16(vectors)):
            self.refine = self.rerank.refined(self.index)  # the rows moved

    def remove(self, slots: np.ndarray) -> None:
        pass  # masked by the search's bitmap until compaction

    def search(
        self,
        queries: np.ndarray,
        fetch: int,
        bits: np.ndarray | None,
        params: SearchParams,
        exhaustive: bool,
    ) -> Hits:
        parts = []
        if self.trained and self.index.ntotal:
            nprobe = int(params.nprobe or 1)
            ef = max(64, 2 * nprobe) if self._graph_quantizer else None
            bulk_params = search_params(bits, nprobe, quantizer_ef=ef)
            candidates = max(fetch, params.rerank_k or 0)
            refine = refine_params(bulk_params, candidates, fetch)
            refine.referenced_objects = [bulk_params]
            parts.append(search_with(self.refine, queries, fetch, refine))
        if self.delta.size:
            parts.append(self.delta.search(queries, fetch, bits))
        return merged(parts, len(queries), fetch)

    def starts_exhaustive(
        self, bits: np.ndarray | None, n_match: int, params: SearchParams
    ) -> bool:
        return False

    def gather_cost(self, params: SearchParams, exhaustive: bool) -> float | None:
        if not (self.trained and self.n_bulk):
            return None
        share = 1.0 if exhaustive else min(1.0, int(params.nprobe or 1) / self.ivf.nlist)
        return self.rerank.size * share

    def score_subset(
        self, queries: np.ndarray, fetch: int, bits: np.ndarray | None, slots: np.ndarray
    ) -> Hits:
        in_bulk = slots[: int(np.searchsorted(slots, self.n_bulk))]
        parts = [score_rows(queries, self.rerank.gather(in_bulk), in_bulk, fetch)]
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
            out[~fresh] = self.rerank.gather(slots[~fresh])
        return out

    def fold(self, max_vectors: int) -> int:
        return 0

    def compacted(
        self, keep: np.ndarray, n_slots: int, read: ReadLock, rebuild: bool
    ) -> tuple[Backend, np.ndarray] | None:
        if not self.trained:
            if len(keep) < min_train(self.spec):
                return None
            rows = np.vstack([np.zeros((0, self.dim), np.float32), *chunks(keep, read, self.rows)])
            index = new_index(self.spec, self.dim)
            train_index(index, rows)
            index.add_with_ids(rows, np.arange(len(keep), dtype=np.int64))
            store = RerankStore.written(self.work_dir, self.dim, [rows])
            return CompressedIvfBackend(self.dim, self.spec, self.work_dir, index, store), keep
        with read():  # a copy of the codes, and of the fresh rows (the file's are immutable)
            in_file = self.rerank.size
            if len(keep) == n_slots and self.rerank.fresh == 0:
                return None
            index = faiss.clone_index(self.index)
            fresh = self.rerank.fresh_rows.copy()
        relabel_ivf(faiss.extract_index_ivf(index), new_of_old(n_slots, keep))
        index.ntotal = faiss.extract_index_ivf(index).ntotal
        split = int(np.searchsorted(keep, in_file))
        store = self.rerank.rewritten(keep[:split], fresh[keep[split:] - in_file])
        return CompressedIvfBackend(self.dim, self.spec, self.work_dir, index, store), keep

    def memory_bytes(self) -> int:
        fresh = self.rerank.fresh * self.dim * 2
        return bulk_bytes(self.index, self.ivf, False) + fresh + self.delta.nbytes

    def save(self, directory: Path) -> dict[str, object]:
        faiss.write_index(self.index, str(directory / BULK_FILE))
        fresh = self.rerank.gather(np.arange(self.rerank.size, self.n_bulk))
        return {
            "n_bulk": self.rerank.size,
            "rerank": self.rerank.link_into(directory),
            "fresh_in_bulk": self.trained,  # the bulk file holds the fresh rows' codes
            "delta_vectors": np.vstack([fresh, self.delta.rows()]),
        }

    @classmethod
    def load(
        cls,
        directory: Path,
        dim: int,
        spec: IndexSpec,
        work_dir: Path,
        meta: dict,
        delta_rows: np.ndarray,
    ) -> CompressedIvfBackend:
        """A snapshot's bulk, re-rank rows and fresh rows (whose codes an earlier version
        kept apart, in an exact delta, when its metadata says so)."""
        # snapshots of earlier versions list raw segments under "rerank_segments"
        described = meta["rerank"] if "rerank" in meta else meta["rerank_segments"]
        store = RerankStore.from_description(directory, described, dim, work_dir)
        try:
            index = faiss.read_index(str(directory / BULK_FILE))
            backend = cls(dim, spec, work_dir, index, store)
            slots = np.arange(store.size, store.size + len(delta_rows), dtype=np.int64)
            if meta.get("fresh_in_bulk") is True:
                backend.keep_rows(delta_rows)
                backend.delta.start = backend.n_bulk
            elif len(delta_rows):
                backend.add(delta_rows, slots)
        except BaseException:
            store.close()
            raise
        return backend

    def close(self) -> None:
        self.rerank.close()
