"""One backend per index kind behind the narrow `Backend` protocol (`base.py`): exact
flat, exact IVF, compressed IVF re-ranked exactly, graphs; `gpu` holds an IVF on a GPU
where faiss finds one. `new_backend`, `built_backend` and `load_backend` pick the kind
from the spec, so the shard never asks which kind it holds."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from workers.index.backends.base import Backend
from workers.index.backends.flat import FlatBackend
from workers.index.backends.gpu import on_gpu
from workers.index.backends.hnsw import GraphBackend
from workers.index.backends.ivf import IvfFlatBackend
from workers.index.backends.ivfpq import CompressedIvfBackend
from workers.index.rerank import RerankStore
from workers.index.spec import IndexSpec

__all__ = ["Backend", "built_backend", "load_backend", "new_backend"]


def new_backend(spec: IndexSpec, dim: int, work_dir: Path) -> Backend:
    """An empty backend of the spec's kind (untrained where the kind needs training)."""
    if spec.kind == "flat" and not spec.rerank:
        return FlatBackend(dim)
    if spec.kind == "ivf":
        if spec.rerank:
            return on_gpu(CompressedIvfBackend(dim, spec, work_dir))
        return on_gpu(IvfFlatBackend(dim, spec))
    return GraphBackend(dim, spec, work_dir)


def built_backend(
    spec: IndexSpec,
    dim: int,
    work_dir: Path,
    index: faiss.Index,
    alive: np.ndarray,
    rerank: RerankStore | None,
) -> Backend:
    """A backend around an index built elsewhere (labels: slots 0..ntotal-1), the slots
    not `alive` removed (`build.build_bulk` drops repeated ids that way)."""
    dead = np.flatnonzero(~alive)
    backend: Backend
    if spec.kind == "flat" and not spec.rerank:
        backend = FlatBackend(dim, index)
    elif spec.kind == "ivf" and spec.rerank:
        backend = CompressedIvfBackend(dim, spec, work_dir, index, rerank)
    elif spec.kind == "ivf":
        backend = IvfFlatBackend(dim, spec, index)
    else:
        backend = GraphBackend(dim, spec, work_dir, index, rerank)
    if len(dead):
        backend.remove(dead)
    return on_gpu(backend)


def load_backend(
    directory: Path,
    meta: dict,
    spec: IndexSpec,
    dim: int,
    work_dir: Path,
    alive: np.ndarray,
    delta_rows: np.ndarray,
) -> Backend:
    """The backend a snapshot holds (see `Backend.save`), fresh rows included."""
    n_bulk = int(meta["n_bulk"])
    backend: Backend
    if spec.kind == "flat" and not spec.rerank:
        backend = FlatBackend.load(directory, dim, alive)
    elif spec.kind == "ivf" and spec.rerank:
        return on_gpu(CompressedIvfBackend.load(directory, dim, spec, work_dir, meta, delta_rows))
    elif spec.kind == "ivf":
        backend = IvfFlatBackend.load(directory, dim, spec, n_bulk, alive)
    else:
        return GraphBackend.load(directory, dim, spec, work_dir, meta, delta_rows)
    if len(delta_rows):  # earlier versions kept fresh vectors apart from an exact bulk
        backend.add(delta_rows, np.arange(n_bulk, n_bulk + len(delta_rows), dtype=np.int64))
    return on_gpu(backend)
