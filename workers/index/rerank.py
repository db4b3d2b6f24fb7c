"""Exact re-ranking rows for compressed shards: one bfloat16 file on disk, memory-mapped.

A compressed code (OPQ+PQ) only ranks candidates roughly; the exact score of the top
candidates is recomputed from these rows. The file is a FAISS ``IndexScalarQuantizer``
(QT_bf16, inner product) that FAISS reads in place from a memory map, so its rows stay on
disk (in the page cache) and the re-rank runs inside FAISS as an ``IndexRefine`` over the
bulk: one C++ call does the compressed search and the exact scores, ~3x faster than
gathering and widening the rows in numpy. bfloat16 halves the disk of float32 and its
score error (~1e-4) is far below the gaps between neighbours.

The file is immutable: compaction writes a new one (it rewrites the rows anyway when it
drops removed vectors), so a snapshot can hard-link the file instead of copying gigabytes.
The rows of fresh vectors (slots past the file's) are kept in RAM right after the file's
rows, in one private copy-on-write mapping (``privatemap.py``), so the same ``IndexRefine``
re-scores fresh candidates too, until compaction writes them into a new file.
Snapshots of earlier versions (a list of raw 16-bit segment files) are converted on load.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import faiss
import numpy as np

from workers.index.privatemap import map_with_room
from workers.index.snapshot import sha256_file

BFLOAT16 = "bfloat16"
FLOAT16 = "float16"
FORMAT = "faiss-sq-bf16"
ROW_BYTES = 2
_BLOCK = 65536
_MIN_ROOM = 1024  # rows of room for fresh vectors made at a time (doubling past it)


def to_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), rounding to nearest even."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def from_rows(rows: np.ndarray, encoding: str) -> np.ndarray:
    """16-bit rows (uint16 bits) -> float32."""
    if encoding == BFLOAT16:
        wide = rows.astype(np.uint32)
        wide <<= np.uint32(16)  # in place: one pass less over the rows
        return wide.view(np.float32)
    return rows.view(np.float16).astype(np.float32)


def _header(dim: int, rows: int) -> bytes:
    """FAISS's own serialisation of an index of `rows` bf16 codes, up to the codes: they
    are the last field, after their byte count (so rows can be streamed in behind it)."""
    index = faiss.IndexScalarQuantizer(
        dim, faiss.ScalarQuantizer.QT_bf16, faiss.METRIC_INNER_PRODUCT
    )
    index.ntotal = rows
    raw = faiss.serialize_index(index).tobytes()
    if raw[-8:] != bytes(8):
        raise RuntimeError("unexpected FAISS scalar quantizer layout")
    return raw[:-8] + np.uint64(rows * dim * ROW_BYTES).tobytes()


class RerankStore:
    """bfloat16 rows for slots [0, size) from one file, then `fresh` rows appended in RAM."""

    def __init__(self, path: Path, dim: int, sha256: str | None = None) -> None:
        self.path = Path(path)
        self.dim = dim
        self.sha256 = sha256 or sha256_file(self.path)
        self.fresh = 0
        self._map(0)

    def _map(self, room: int) -> None:
        """(Re)map the file privately with `room` rows after it; FAISS reads it in place."""
        row = self.dim * ROW_BYTES
        mapped = map_with_room(self.path, room * row)
        file_bytes = mapped.size - room * row
        index = faiss.read_index(faiss.ZeroCopyIOReader(faiss.swig_ptr(mapped), file_bytes))
        if index.d != self.dim or faiss.downcast_index(index).code_size != row:
            raise ValueError(f"re-rank file {self.path.name} does not hold {self.dim}-d bf16 rows")
        size = int(index.ntotal)
        offset = file_bytes - size * row
        if room:  # the header (in this private copy only) counts the room's rows too
            header = _header(self.dim, size + room)
            if len(header) != offset:
                raise ValueError(f"re-rank file {self.path.name} has an unexpected header")
            mapped[:offset] = np.frombuffer(header, dtype=np.uint8)
            index = faiss.read_index(faiss.ZeroCopyIOReader(faiss.swig_ptr(mapped), mapped.size))
        index.referenced_objects = [mapped]  # FAISS reads the codes in place: keep them mapped
        self.index = index
        self.size = size
        self._room = room
        rows = mapped[offset:].view(np.uint16).reshape(size + room, self.dim)
        self._every, self._rows, self._tail = rows, rows[:size], rows[size:]

    @property
    def fresh_rows(self) -> np.ndarray:
        """The appended rows, (fresh, dim) bfloat16 bits: a view, valid until the next append."""
        return self._tail[: self.fresh]

    def append(self, rows: np.ndarray) -> bool:
        """Keep bfloat16 rows (uint16) for the next fresh slots; True when the mapping moved
        to make room, so `refined` indexes made before must be made again."""
        needed = self.fresh + len(rows)
        moved = needed > self._room
        if moved:
            kept = self.fresh_rows.copy()
            self._map(max(needed, 2 * self._room, _MIN_ROOM))
            self._tail[: len(kept)] = kept
        self._tail[self.fresh : needed] = rows
        self.fresh = needed
        return moved

    @property
    def disk_bytes(self) -> int:
        return self.size * self.dim * ROW_BYTES

    @classmethod
    def written(cls, directory: Path, dim: int, blocks: Iterable[np.ndarray] = ()) -> RerankStore:
        """A new store of the rows in `blocks` (see `RowWriter`)."""
        writer = RowWriter(directory, dim)
        try:
            for block in blocks:
                writer.write(block)
        except BaseException:
            writer.abort()
            raise
        return writer.close()

    def rewritten(self, keep: np.ndarray | None, fresh: np.ndarray | None) -> RerankStore:
        """A new store: this one's rows `keep` (all if None), then the rows `fresh`. Rows
        are copied as bits, without widening."""
        keep = np.arange(self.size, dtype=np.int64) if keep is None else keep

        def blocks() -> Iterable[np.ndarray]:
            for start in range(0, len(keep), _BLOCK):
                time.sleep(0)  # a compaction runs beside searches: let them have the GIL
                yield self._rows[keep[start : start + _BLOCK]]
            if fresh is not None and len(fresh):
                yield fresh

        return RerankStore.written(self.path.parent, self.dim, blocks())

    def gather(self, slots: np.ndarray) -> np.ndarray:
        """float32 rows for the given slots, the file's and the fresh ones after them."""
        rows = self._every[: self.size + self.fresh]
        return from_rows(rows[np.asarray(slots, dtype=np.int64)], BFLOAT16)

    def refined(self, base: faiss.Index) -> faiss.IndexRefine:
        """`base` whose candidates are re-scored from these rows, fresh ones included
        (labels of `base` are slots). The caller keeps this store alive: IndexRefine does
        not own its parts."""
        index = self.index
        index.ntotal = base.ntotal  # IndexRefine checks equal sizes once, when made,
        refine = faiss.IndexRefine(base, index)
        index.ntotal = refine.ntotal = self.size + self._room  # and labels below its own
        return refine

    def link_into(self, target: Path) -> dict[str, object]:
        """Hard-link (or copy) the file into `target`; describe it for metadata."""
        _link_or_copy(self.path, Path(target) / self.path.name)
        return {"file": self.path.name, "rows": self.size, "sha256": self.sha256, "format": FORMAT}

    @classmethod
    def from_description(
        cls, source: Path, description: object, dim: int, work_dir: Path
    ) -> RerankStore:
        """Open a snapshot's store, linked into `work_dir` so the snapshot can be pruned.
        The link gets a name of its own: replicas loading the same snapshot into one work
        directory each remove only their own link when they compact."""
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        if isinstance(description, list):  # raw segments of an earlier version
            return cls.written(work_dir, dim, _legacy_rows(Path(source), description, dim))
        if not isinstance(description, dict) or description.get("format") != FORMAT:
            raise ValueError(f"unknown re-rank store {description!r}")
        dest = _new_path(work_dir)
        _link_or_copy(Path(source) / str(description["file"]), dest)
        try:
            store = cls(dest, dim, str(description["sha256"]))
            if store.size != _int(description["rows"]):
                raise ValueError(f"re-rank file holds {store.size} rows, not as described")
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return store

    def close(self) -> None:
        """Remove the file (snapshots keep their own hard links)."""
        self.path.unlink(missing_ok=True)


class RowWriter:
    """Streams rows (float32 vectors or bfloat16 bits as uint16) into a new store file,
    so 10M rows never sit in memory; ``close()`` opens the finished store."""

    def __init__(self, directory: Path, dim: int) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self.path = _new_path(directory)
        self.rows = 0
        self._fh = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        self._fh.write(_header(dim, 0))  # rewritten by close() once the count is known

    def write(self, block: np.ndarray) -> None:
        bits = block if block.dtype == np.uint16 else to_bfloat16(block)
        if bits.ndim != 2 or bits.shape[1] != self.dim:
            raise ValueError(f"re-rank rows must be (n, {self.dim})")
        self._fh.write(np.ascontiguousarray(bits).tobytes())
        self.rows += len(bits)

    def close(self) -> RerankStore:
        self._fh.seek(0)
        self._fh.write(_header(self.dim, self.rows))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        return RerankStore(self.path, self.dim)  # hashed by reading back: header came last

    def abort(self) -> None:
        self._fh.close()
        self.path.unlink(missing_ok=True)


def _new_path(directory: Path) -> Path:
    return directory / f"rerank-{uuid.uuid4().hex}.faiss"


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def _legacy_rows(source: Path, segments: list, dim: int) -> Iterable[np.ndarray]:
    """float32 rows of an earlier version's raw segment files, in slot order."""
    expected = 0
    for seg in segments:
        if not isinstance(seg, dict):
            raise ValueError(f"bad legacy re-rank segment {seg!r}")
        start, rows = _int(seg["start"]), _int(seg["rows"])
        encoding = str(seg.get("encoding", FLOAT16))
        if start != expected or encoding not in (BFLOAT16, FLOAT16):
            raise ValueError(f"bad legacy re-rank segment {seg!r}")
        expected += rows
        if rows:
            raw = np.memmap(source / str(seg["file"]), np.uint16, "r", shape=(rows, dim))
            for i in range(0, rows, _BLOCK):
                yield from_rows(np.asarray(raw[i : i + _BLOCK]), encoding)


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value
