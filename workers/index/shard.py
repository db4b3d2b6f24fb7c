"""One index shard: a backend of the shard's index kind composed with per-slot columns
(image id, product id, filter attributes, liveness), an id lookup and filter bitmaps.

- A vector's label inside FAISS is its slot (arrival order); deleted and superseded slots
  and filters become a bitmap the backend's search tests (`state.ShardState.selection`).
  How vectors are stored, trained, removed, searched and compacted is the backend's
  business, one module per index kind (`backends/`).
- Everything a search reads is one `ShardState`, swapped whole by a compaction, a build,
  a swap or a load. A readers-writer lock lets searches run concurrently (FAISS releases
  the GIL) while writes change the state in place, one at a time.
- `compact()` builds the compacted state aside, the write lock held only to catch up and
  swap (`compaction.py`); upkeep (`workers/serving/upkeep.py`) decides when.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from pathlib import Path

import faiss
import numpy as np

from workers.index import compaction, persist, searching
from workers.index import snapshot as snap
from workers.index.backends import built_backend, new_backend
from workers.index.columns import Columns
from workers.index.rerank import RerankStore
from workers.index.rwlock import RWLock
from workers.index.selection import Selection
from workers.index.spec import IndexSpec, SearchParams, choose_spec, default_params
from workers.index.state import ShardState
from workers.index.types import SearchFilter, SearchResult, VectorAttrs
from workers.index.vectors import unit_queries, unit_rows

logger = logging.getLogger(__name__)

REBUILD_FRACTION = 0.2  # graph indexes are rebuilt to drop removed vectors past this fraction
FOLD_CHUNK = compaction.FOLD_CHUNK


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
        self.rebuild_fraction = rebuild_fraction
        self.last_applied: str | None = None
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="shard-"))
        self.lock = RWLock()
        self.writer = threading.RLock()  # one writer at a time
        self.compacting = threading.Lock()  # one compaction at a time
        backend = new_backend(self.spec, self.dim, self.work_dir)
        params = params or default_params(self.spec)
        self.state = ShardState.of(backend, Columns(), params, {}, 0)

    # ------------------------------------------------------------ knobs

    @property
    def params(self) -> SearchParams:
        return self.state.params

    @params.setter
    def params(self, params: SearchParams) -> None:
        with self.writer:
            self.state = self.state.tuned(params=params)

    @property
    def tune_report(self) -> dict[str, object]:
        """What the tuner chose and measured (`tune.autotune`), kept in snapshots."""
        return self.state.tune_report

    @tune_report.setter
    def tune_report(self, report: dict[str, object]) -> None:
        with self.writer:
            self.state = self.state.tuned(tune=dict(report))

    def scaled_params(self, params: SearchParams, k: int, kept: float = 1.0) -> SearchParams:
        """The knobs a search for `k` results runs with under a filter keeping a fraction
        `kept` of the vectors (see `depth.py`): what benchmarks give raw FAISS."""
        return searching.scaled(self.state, self.spec, params, k, kept)

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
            ids, vectors, attrs = ids[keep], vectors[keep], attrs.take(keep)
        with self.writer, self.lock.write():
            state = self.state
            old = state.find(ids)
            old = old[old >= 0]
            state.cols.data["alive"][old] = False
            state.backend.remove(old)
            slots = state.cols.append(ids, attrs)
            state.backend.add(vectors, slots)
            state.lookup.add_recent(ids, slots)
            self.state = state.next()

    def delete(self, ids: np.ndarray) -> None:
        """Remove vectors by image id (unknown ids are ignored)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        with self.writer, self.lock.write():
            state = self.state
            slots = state.find(ids)
            slots = slots[slots >= 0]
            state.cols.data["alive"][slots] = False
            state.backend.remove(slots)
            self.state = state.next()

    def fold_delta(self, max_vectors: int = FOLD_CHUNK) -> int:
        """Move up to `max_vectors` of the oldest fresh vectors into a graph bulk, under one
        short write lock; the number moved (other kinds fold nothing: their fresh vectors
        are in their bulk already or wait for compaction)."""
        if not self.state.backend.n_fresh:
            return 0
        with self.writer, self.lock.write():
            moved = self.state.backend.fold(max_vectors)
            if moved:
                self.state = self.state.next()
            return moved

    def compact(self, force_rebuild: bool = False) -> None:
        """Fold fresh vectors into the bulk and drop removed ones where that is cheap, built
        aside while searches and writes go on (see `compaction.py`)."""
        compaction.compact(self, force_rebuild)

    def install(self, index: faiss.Index, cols: Columns, rerank: RerankStore | None) -> None:
        """Take a bulk built elsewhere (`build.build_bulk`): labels are the slots of `cols`."""
        backend = built_backend(self.spec, self.dim, self.work_dir, index, cols["alive"], rerank)
        self._swap_in(ShardState.of(backend, cols, self.params, self.tune_report, 0))

    def swap_bulk(self, other: Shard) -> None:
        """Take over another shard's whole state (a rebuilt and replayed index)."""
        if other.dim != self.dim or other.model != self.model:
            raise ValueError("cannot swap in a shard of another model or dimension")
        with other.writer, other.lock.write():
            self.spec = other.spec
            self.rebuild_fraction = other.rebuild_fraction
            self._swap_in(other.state)

    def _swap_in(self, state: ShardState) -> None:
        with self.writer, self.lock.write():
            replaced = self.state
            self.state = ShardState.of(
                state.backend, state.cols, state.params, state.tune_report, replaced.version + 1
            )
        if replaced.backend is not state.backend:
            replaced.backend.close()

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
        with self.lock.read():
            return searching.search(self.state, self.spec, queries, k, filters, params)

    def selection_of(self, image_ids: np.ndarray) -> Selection:
        """The live vectors among `image_ids`, for `search_images`: a filter the tuner
        draws at random, as attributes cannot."""
        with self.lock.read():
            state = self.state
            slots = state.find(image_ids)
            mask = np.zeros(state.cols.size, dtype=bool)
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
        with self.lock.read():
            state = self.state
            bits = (state.selection(None) if selection is None else selection).bits
            p = (params or SearchParams()).merged_over(state.params)
            scores, slots = searching.slots_of(state, self.spec, queries, k, bits, p)
            ids = np.where(slots >= 0, state.cols.data["image_ids"][np.maximum(slots, 0)], -1)
            return np.where(slots >= 0, scores, np.float32(-np.inf)), ids.astype(np.int64)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Whether each image id is live in the shard."""
        with self.lock.read():
            return self.state.find(ids) >= 0

    def ids(self) -> np.ndarray:
        """All live image ids (sorted), for reconciliation against the database."""
        with self.lock.read():
            cols = self.state.cols
            return np.sort(cols["image_ids"][cols["alive"]].astype(np.int64))

    def live_rows(self) -> tuple[np.ndarray, VectorAttrs]:
        """Every live image id (sorted, int64) with its filter attributes, for reconciliation
        (`workers.index.digest`). Copies, taken under the read lock: writes may go on."""
        with self.lock.read():
            cols = self.state.cols
            slots = np.flatnonzero(cols["alive"])
            ids = cols.data["image_ids"][slots].astype(np.int64)
            attrs = cols.attrs(slots)
        order = np.argsort(ids, kind="stable")
        return ids[order], attrs.take(order)

    def attrs_of(self, ids: np.ndarray) -> VectorAttrs:
        """Attributes of live image ids (raises KeyError if one is absent)."""
        with self.lock.read():
            state = self.state
            slots = state.find(ids)
            if (slots < 0).any():
                raise KeyError(f"ids not in shard: {np.asarray(ids)[slots < 0][:5].tolist()}")
            return state.cols.attrs(slots)

    @property
    def delta_size(self) -> int:
        """Fresh vectors waiting for a compaction."""
        return self.state.backend.n_fresh

    @property
    def n_vectors(self) -> int:
        """Live vectors (cheap; ``stats()`` also measures memory)."""
        return self.state.live_count

    def stats(self) -> dict[str, object]:
        with self.lock.read():
            state = self.state
            return {
                "model": self.model,
                "dim": self.dim,
                "spec": self.spec.factory,
                "rerank": self.spec.rerank,
                "params": state.params.to_dict(),
                "tune": state.tune_report,
                **state.counts(self.spec.kind == "ivf"),
                "last_applied": self.last_applied,
            }

    def memory_bytes(self) -> int:
        """Resident bytes: index + fresh rows + columns + id lookup + cached filter bitmaps
        (not the re-rank file, which stays on disk)."""
        return self.state.memory_bytes

    # ------------------------------------------------------------ persistence

    def snapshot(self, directory: Path, log_position: str) -> Path:
        """Write an atomic, checksummed snapshot under `directory`; keep the previous one."""
        meta = {"model": self.model, "dim": self.dim, "spec": self.spec.to_dict()}
        with self.writer, self.lock.read():
            return persist.write(self.state, Path(directory), meta, log_position)

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
        work = Path(work_dir) if work_dir else Path(path).parent / "work"
        state = persist.read(Path(path), meta, work)
        shard = cls(
            int(meta["dim"]), str(meta["model"]), IndexSpec.from_dict(meta["spec"]), work_dir=work
        )
        shard._swap_in(state)
        shard.last_applied = str(meta["log_position"])
        return shard
