"""A backend's bulk also held on a GPU, answering batched queries there.

Where faiss finds a GPU (`faiss.get_num_gpus()`), an IVF backend (exact or compressed)
keeps a GPU copy of its bulk (faiss's GPU IVF indexes; a compressed one re-ranks the
GPU's candidates from its exact rows on the CPU), and a graph backend a CAGRA graph of
its rows where the installed faiss offers one. Batches of INDEX_GPU_MIN_BATCH queries or more
go to the GPU; single queries, selective filters and everything else stay on the CPU
backend, which stays the reference and the only copy written to disk. Nothing here is
required: without a GPU `on_gpu` returns the backend as it is.

The copy follows the CPU backend's writes: fresh vectors are added to a GPU IVF too;
removed slots, which GPU indexes cannot drop, are filtered out of its hits, as are slots
the search's bitmap excludes (asking the GPU for more hits), and rows a graph gained
since its copy are scored exactly on the CPU. A compaction makes a new copy aside."""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np

from workers.config import worker_config
from workers.index.backends.base import Backend, Hits, ReadLock, score_rows
from workers.index.faiss_calls import merged
from workers.index.spec import SearchParams

logger = logging.getLogger(__name__)

MAX_FETCH = 2048  # GPU IVF searches return at most this many hits per query
MAX_SCORED = 65_536  # rows gained since the copy scored exactly before the CPU answers instead


def gpu_count() -> int:
    try:
        return int(faiss.get_num_gpus())
    except AttributeError:  # faiss-cpu
        return 0


def on_gpu(backend: Backend) -> Backend:
    """`backend` with a GPU copy of its bulk where a GPU and a GPU index of its kind are
    available and it has a trained bulk; else `backend` itself."""
    if not worker_config().index.use_gpu or gpu_count() == 0 or isinstance(backend, GpuBackend):
        return backend
    try:
        copy = _gpu_copy(backend)
    except RuntimeError as exc:  # no GPU index of this kind, or out of GPU memory
        logger.warning("index stays on the CPU: %s", exc)
        return backend
    return backend if copy is None else GpuBackend(backend, *copy)


def _resources() -> faiss.StandardGpuResources:
    global _RESOURCES
    if _RESOURCES is None:
        _RESOURCES = faiss.StandardGpuResources()
    return _RESOURCES


_RESOURCES: faiss.StandardGpuResources | None = None


def _gpu_copy(backend: Backend) -> tuple[faiss.Index, faiss.Index | None, str] | None:
    """(the index searched on the GPU, the CPU re-rank over it or None, "ivf" or "graph")."""
    index = getattr(backend, "index", None)
    if index is None or not index.is_trained or index.ntotal == 0:
        return None
    if faiss.try_extract_index_ivf(index) is not None:
        options = faiss.GpuClonerOptions()
        options.useFloat16 = False
        gpu = faiss.index_cpu_to_gpu(_resources(), 0, index, options)
        rerank = getattr(backend, "rerank", None)
        if rerank is None:
            return gpu, None, "ivf"
        return gpu, rerank.refined(gpu), "ivf"
    if getattr(backend, "links", 0) and hasattr(faiss, "GpuIndexCagra"):
        rows = backend.rows(np.arange(index.ntotal, dtype=np.int64))
        config = faiss.GpuIndexCagraConfig()
        cagra = faiss.GpuIndexCagra(_resources(), index.d, faiss.METRIC_INNER_PRODUCT, config)
        cagra.train(rows)
        return cagra, None, "graph"
    return None


class GpuBackend:
    """A CPU backend (every write, file and single query) with a GPU copy of its bulk."""

    def __init__(
        self, cpu: Backend, gpu: faiss.Index, refine: faiss.Index | None, kind: str
    ) -> None:
        self.cpu = cpu
        self.gpu = gpu
        self.refine = refine
        self.kind = kind
        self.removes_in_place = cpu.removes_in_place
        self._copy_end = cpu.n_bulk  # slots below it are in the copy
        self._dead = np.zeros(0, dtype=np.int64)  # removed since the copy, sorted
        self.min_batch = worker_config().index.gpu_min_batch  # fewer queries: the CPU answers

    def __getattr__(self, name: str) -> object:
        """The CPU backend's own fields (its index, re-rank store, delta) read through."""
        return getattr(self.cpu, name)

    @property
    def n_bulk(self) -> int:
        return self.cpu.n_bulk

    @property
    def n_fresh(self) -> int:
        return self.cpu.n_fresh

    def add(self, vectors: np.ndarray, slots: np.ndarray) -> None:
        before = self.cpu.n_bulk
        self.cpu.add(vectors, slots)
        if self.kind == "ivf" and self.cpu.n_bulk > before and self._copy_end == before:
            self.gpu.add_with_ids(vectors, np.ascontiguousarray(slots, dtype=np.int64))
            self._copy_end = self.cpu.n_bulk
            if self.refine is not None:
                rerank = self.cpu.rerank  # type: ignore[attr-defined]
                self.refine = rerank.refined(self.gpu)  # its rows may have moved

    def remove(self, slots: np.ndarray) -> None:
        self.cpu.remove(slots)
        self._dead = np.union1d(self._dead, np.asarray(slots, dtype=np.int64))

    def search(
        self,
        queries: np.ndarray,
        fetch: int,
        bits: np.ndarray | None,
        params: SearchParams,
        exhaustive: bool,
    ) -> Hits:
        gained = self.cpu.n_bulk - self._copy_end
        # more hits than asked, for those the filters drop (too few left: the CPU answers)
        asked = fetch + min(len(self._dead), fetch) + (fetch + 64 if bits is not None else 0)
        if len(queries) < self.min_batch or asked > MAX_FETCH or gained > MAX_SCORED:
            return self.cpu.search(queries, fetch, bits, params, exhaustive)
        scores, slots = self._gpu_hits(queries, asked, params)
        dropped = np.isin(slots, self._dead) | (slots < 0)
        if bits is not None:
            safe = np.maximum(slots, 0)
            dropped |= ((bits[safe >> 3] >> (safe & 7)) & 1) == 0
        kept = (~dropped).sum(axis=1)
        if (kept < fetch).any() and (slots[:, -1] >= 0).any():
            return self.cpu.search(queries, fetch, bits, params, exhaustive)  # filtered too many
        scores = np.where(dropped, -np.inf, scores).astype(np.float32)
        slots = np.where(dropped, -1, slots)
        parts = [_top(scores, slots, fetch)]
        if gained:
            extra = np.arange(self._copy_end, self.cpu.n_bulk, dtype=np.int64)
            if bits is not None:
                extra = extra[((bits[extra >> 3] >> (extra & 7)) & 1) == 1]
            extra = np.setdiff1d(extra, self._dead)
            parts.append(score_rows(queries, self.cpu.rows(extra), extra, fetch))
        if self.cpu.n_fresh and self.kind == "graph":  # the delta beside the graph
            delta = self.cpu.delta  # type: ignore[attr-defined]
            parts.append(delta.search(queries, fetch, bits))
        return merged(parts, len(queries), fetch)

    def _gpu_hits(self, queries: np.ndarray, asked: int, params: SearchParams) -> Hits:
        if self.kind == "graph":
            cagra = faiss.SearchParametersCagra()
            cagra.itopk_size = max(asked, int(params.ef_search or 64))
            return self.gpu.search(queries, asked, params=cagra)
        gpu_params = faiss.SearchParametersIVF(nprobe=min(int(params.nprobe or 1), MAX_FETCH))
        if self.refine is None:
            return self.gpu.search(queries, asked, params=gpu_params)
        candidates = max(asked, params.rerank_k or 0)
        refine = faiss.IndexRefineSearchParameters(k_factor=(candidates + 0.5) / asked)
        refine.base_index_params = gpu_params
        return self.refine.search(queries, asked, params=refine)

    def starts_exhaustive(
        self, bits: np.ndarray | None, n_match: int, params: SearchParams
    ) -> bool:
        return self.cpu.starts_exhaustive(bits, n_match, params)

    def gather_cost(self, params: SearchParams, exhaustive: bool) -> float | None:
        return self.cpu.gather_cost(params, exhaustive)

    def score_subset(
        self, queries: np.ndarray, fetch: int, bits: np.ndarray | None, slots: np.ndarray
    ) -> Hits:
        return self.cpu.score_subset(queries, fetch, bits, slots)

    def rows(self, slots: np.ndarray) -> np.ndarray:
        return self.cpu.rows(slots)

    def fold(self, max_vectors: int) -> int:
        return self.cpu.fold(max_vectors)

    def compacted(
        self, keep: np.ndarray, n_slots: int, read: ReadLock, rebuild: bool
    ) -> tuple[Backend, np.ndarray] | None:
        built = self.cpu.compacted(keep, n_slots, read, rebuild)
        return None if built is None else (on_gpu(built[0]), built[1])

    def memory_bytes(self) -> int:
        return self.cpu.memory_bytes()  # host memory; the GPU's is its own

    def save(self, directory: Path) -> dict[str, object]:
        return self.cpu.save(directory)

    def close(self) -> None:
        self.cpu.close()


def _top(scores: np.ndarray, slots: np.ndarray, fetch: int) -> Hits:
    """The best `fetch` of hits some of which were dropped (-inf, -1)."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :fetch]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(slots, order, 1)
