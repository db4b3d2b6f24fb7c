"""Fresh vectors kept exact beside a bulk that cannot take them yet: an untrained index,
or a graph, whose inserts cost ~0.3 ms a vector (folded in later, a chunk at a time).

The delta holds a contiguous run of slots, [start, start + size): slots are handed out in
arrival order and only the oldest leave it (folded into the bulk). Compressed shards keep
its rows as bfloat16, like their re-rank file: ~1 KB a fresh vector at 512-d, not 2."""

from __future__ import annotations

import faiss
import numpy as np

from workers.index.backends.base import Hits
from workers.index.faiss_calls import METRIC, search_with
from workers.index.rerank import BFLOAT16, from_rows, to_bfloat16


class Delta:
    """Exact rows of the newest slots and an IDMap scan over them."""

    def __init__(self, dim: int, start: int, bfloat16: bool) -> None:
        self.dim = dim
        self.start = start
        self.size = 0
        self.bfloat16 = bfloat16
        if bfloat16:
            coded = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_bf16, METRIC)
            self.index = faiss.IndexIDMap(coded)
        else:
            self.index = faiss.IndexIDMap(faiss.IndexFlatIP(dim))
        self._rows = np.zeros((0, dim), dtype=np.uint16 if bfloat16 else np.float32)

    @property
    def end(self) -> int:
        """The slot after the delta's last."""
        return self.start + self.size

    @property
    def nbytes(self) -> int:
        code = faiss.downcast_index(self.index.index).code_size
        return self._rows[: self.size].nbytes + self.size * (code + 8)

    def add(self, vectors: np.ndarray, slots: np.ndarray) -> None:
        """Keep fresh vectors, whose slots follow the delta's last."""
        if len(slots) and int(slots[0]) != self.end:
            raise ValueError("delta slots must be contiguous")
        needed = self.size + len(vectors)
        if needed > len(self._rows):
            grown = np.zeros((max(needed, 2 * len(self._rows), 256), self.dim), self._rows.dtype)
            grown[: self.size] = self._rows[: self.size]
            self._rows = grown
        self._rows[self.size : needed] = to_bfloat16(vectors) if self.bfloat16 else vectors
        self.size = needed
        self.index.add_with_ids(vectors, np.ascontiguousarray(slots, dtype=np.int64))

    def rows(self, slots: np.ndarray | None = None) -> np.ndarray:
        """float32 rows of the given delta slots (all when None)."""
        kept = self._rows[: self.size]
        if slots is not None:
            kept = kept[np.asarray(slots, dtype=np.int64) - self.start]
        return from_rows(kept, BFLOAT16) if self.bfloat16 else np.array(kept)

    def raw_rows(self) -> np.ndarray:
        """The rows as kept (bfloat16 bits or float32), a copy."""
        return self._rows[: self.size].copy()

    def take_oldest(self, n: int) -> np.ndarray:
        """Remove the `n` oldest rows (folded into the bulk elsewhere); their float32 rows."""
        taken = self.rows(np.arange(self.start, self.start + n))
        self.index.remove_ids(faiss.IDSelectorRange(self.start, self.start + n))
        self._rows[: self.size - n] = self._rows[n : self.size]
        self.start += n
        self.size -= n
        return taken

    def search(self, queries: np.ndarray, fetch: int, bits: np.ndarray | None) -> Hits:
        """Top `fetch` (score, slot). Its parameters are made per call: an IndexIDMap
        writes its own selector into the ones it is given while it searches."""
        if bits is None:
            return search_with(self.index, queries, fetch, None)
        params = faiss.SearchParameters()
        sel = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
        params.sel = sel
        return search_with(self.index, queries, fetch, params)
