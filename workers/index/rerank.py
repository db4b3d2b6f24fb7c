"""Exact re-ranking vectors for compressed shards: 16-bit rows on disk, memory-mapped.

A compressed code (OPQ+PQ) only ranks candidates roughly; the exact score of the top
candidates is recomputed from these rows. Rows are bfloat16 (kept as uint16): widening
them to float32 is a shift, about 15x faster here than numpy's float16 conversion (0.7 ms
for 800 candidate rows, more than the whole search), and the score error it leaves (~1e-4)
is far below the gaps between neighbours. Segments written as float16 by earlier versions
still load. The store is a list of immutable segment files, each holding the rows of a
contiguous slot range, so appending a batch is writing a new file and a snapshot can
hard-link segments instead of copying gigabytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BFLOAT16 = "bfloat16"
FLOAT16 = "float16"
ROW_BYTES = 2
_BLOCK = 65536


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


@dataclass(frozen=True)
class Segment:
    path: Path
    start: int  # first slot
    rows: int
    sha256: str
    encoding: str = BFLOAT16

    def open(self, dim: int) -> np.ndarray:
        """The rows, memory-mapped (as a plain ndarray view: np.memmap's indexing is slower)."""
        if self.rows == 0:
            return np.zeros((0, dim), dtype=np.uint16)
        return np.asarray(np.memmap(self.path, dtype=np.uint16, mode="r", shape=(self.rows, dim)))


class RerankStore:
    """Rows for slots [0, size) spread over segment files in `directory`."""

    def __init__(self, directory: Path, dim: int, segments: Iterable[Segment] = ()) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self.segments: list[Segment] = list(segments)
        self._maps = [seg.open(dim) for seg in self.segments]
        self._starts = np.array([seg.start for seg in self.segments], dtype=np.int64)

    @property
    def size(self) -> int:
        return self.segments[-1].start + self.segments[-1].rows if self.segments else 0

    @property
    def disk_bytes(self) -> int:
        return sum(seg.rows for seg in self.segments) * self.dim * ROW_BYTES

    def append(self, vectors: np.ndarray | Iterable[np.ndarray]) -> None:
        """Write rows for the next slots as one new segment (blocks may be streamed in)."""
        blocks = [vectors] if isinstance(vectors, np.ndarray) else vectors
        writer = self.writer()
        for block in blocks:
            writer.write(block)
        writer.close()

    def writer(self) -> SegmentWriter:
        """Stream rows of one new segment (used by bulk builds); commit with ``close()``."""
        return SegmentWriter(self)

    def _register(self, segment: Segment) -> None:
        self.segments.append(segment)
        self._maps.append(segment.open(self.dim))
        self._starts = np.append(self._starts, segment.start)

    def gather(self, slots: np.ndarray) -> np.ndarray:
        """float32 rows for the given slots (any shape); slots out of range give zeros."""
        flat = np.asarray(slots, dtype=np.int64).reshape(-1)
        out = np.zeros((len(flat), self.dim), dtype=np.float32)
        for positions, rows in self._sorted_reads(flat):
            out[positions] = rows
        return out.reshape((*np.shape(slots), self.dim))

    def scores(self, slots: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """Exact inner products of each query with the rows of its slots: (nq, c) float32
        for `slots` (nq, c) and `queries` (nq, dim); slots out of range score 0.

        Like ``gather`` then a product, minus the scatter of the rows back into candidate
        order: only each query's scores are put back (c floats instead of c rows, ~25% of
        a re-rank of 800 candidates)."""
        out = np.zeros(slots.shape, dtype=np.float32)
        for row in range(len(slots)):
            for positions, rows in self._sorted_reads(slots[row]):
                out[row, positions] = rows @ queries[row]
        return out

    def _sorted_reads(self, flat: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions in `flat`, their float32 rows) per segment, read in slot order, which
        is kinder to the page cache; slots out of range are skipped."""
        order = np.argsort(flat)
        ranked = flat[order]
        # each segment's slots form one run of the sorted list; out-of-range ones none
        bounds = np.searchsorted(ranked, [*self._starts.tolist(), self.size])
        for s, segment in enumerate(self.segments):
            lo, hi = int(bounds[s]), int(bounds[s + 1])
            if lo < hi:
                rows = self._maps[s][ranked[lo:hi] - segment.start]
                yield order[lo:hi], from_rows(rows, segment.encoding)

    def rewritten(self, keep: np.ndarray) -> RerankStore:
        """A new store holding only rows `keep` (ascending), renumbered from 0."""
        fresh = RerankStore(self.directory, self.dim)
        fresh.append(self.gather(keep[i : i + _BLOCK]) for i in range(0, len(keep), _BLOCK))
        return fresh

    def link_into(self, target: Path) -> list[dict[str, object]]:
        """Hard-link (or copy) the segment files into `target`; describe them for metadata."""
        described = []
        for seg in self.segments:
            dest = Path(target) / seg.path.name
            try:
                os.link(seg.path, dest)
            except OSError:
                shutil.copyfile(seg.path, dest)
            described.append(
                {
                    "file": seg.path.name,
                    "start": seg.start,
                    "rows": seg.rows,
                    "sha256": seg.sha256,
                    "encoding": seg.encoding,
                }
            )
        return described

    @classmethod
    def from_description(
        cls, source: Path, description: list[dict[str, object]], dim: int, work_dir: Path
    ) -> RerankStore:
        """Open a snapshot's segments, linked into `work_dir` so the snapshot can be pruned."""
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        segments = []
        for d in description:
            name = str(d["file"])
            dest = Path(work_dir) / name
            if not dest.exists():
                try:
                    os.link(Path(source) / name, dest)
                except OSError:
                    shutil.copyfile(Path(source) / name, dest)
            encoding = str(d.get("encoding", FLOAT16))
            if encoding not in (BFLOAT16, FLOAT16):
                raise ValueError(f"unknown re-rank row encoding {encoding!r}")
            segments.append(
                Segment(dest, _int(d["start"]), _int(d["rows"]), str(d["sha256"]), encoding)
            )
        return cls(work_dir, dim, segments)

    def close(self) -> None:
        """Remove segment files this store created in its own directory (not snapshot links)."""
        for seg in self.segments:
            if seg.path.parent == self.directory:
                seg.path.unlink(missing_ok=True)


class SegmentWriter:
    """Appends bfloat16 rows to one new segment file, hashing as it goes."""

    def __init__(self, store: RerankStore) -> None:
        self.store = store
        self.path = store.directory / f"rerank-{uuid.uuid4().hex}.f16"
        self.start = store.size
        self.rows = 0
        self._digest = hashlib.sha256()
        self._fh = open(self.path, "wb")  # noqa: SIM115 (closed in close())

    def write(self, block: np.ndarray) -> None:
        data = to_bfloat16(block).tobytes()
        self._digest.update(data)
        self._fh.write(data)
        self.rows += len(block)

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self.store._register(Segment(self.path, self.start, self.rows, self._digest.hexdigest()))


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value
