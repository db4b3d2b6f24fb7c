"""Per-slot columns of a shard: image id, product id, filter attributes and liveness.

A slot is the label a vector has inside FAISS: slots are handed out in arrival order,
so the ``IDSelectorBitmap`` given to FAISS is a plain bitmap over slots. Integer columns
use the narrowest dtype that holds their values (int16/int32/int64) and widen when a
larger value arrives, which keeps memory per vector small at 10M vectors.
"""

from __future__ import annotations

import numpy as np

from workers.index.types import SearchFilter, VectorAttrs

INT_COLUMNS = ("image_ids", "product_ids", "category_ids")
ALL_COLUMNS = (*INT_COLUMNS, "prices", "in_stock", "alive")
_INT_DTYPES = (np.int16, np.int32, np.int64)


def narrowest_int_dtype(values: np.ndarray, at_least: np.dtype | type = np.int16) -> np.dtype:
    """The smallest of int16/int32/int64 (not smaller than `at_least`) holding all values."""
    start = _INT_DTYPES.index(np.dtype(at_least).type)
    if values.size == 0:
        return np.dtype(_INT_DTYPES[start])
    lo, hi = int(values.min()), int(values.max())
    for dtype in _INT_DTYPES[start:]:
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    raise ValueError("value does not fit in int64")


class Columns:
    """Growable column arrays indexed by slot; only rows [0, size) are meaningful."""

    def __init__(self, capacity: int = 1024) -> None:
        self.size = 0
        self.data: dict[str, np.ndarray] = {
            "image_ids": np.zeros(capacity, dtype=np.int16),
            "product_ids": np.zeros(capacity, dtype=np.int16),
            "category_ids": np.zeros(capacity, dtype=np.int16),
            "prices": np.zeros(capacity, dtype=np.float32),
            "in_stock": np.zeros(capacity, dtype=bool),
            "alive": np.zeros(capacity, dtype=bool),
        }

    def __getitem__(self, name: str) -> np.ndarray:
        """The live view [0, size) of a column."""
        return self.data[name][: self.size]

    @property
    def nbytes(self) -> int:
        return sum(col[: self.size].nbytes for col in self.data.values())

    def append(self, image_ids: np.ndarray, attrs: VectorAttrs) -> np.ndarray:
        """Add rows for new vectors (alive) and return their slots."""
        n = len(image_ids)
        start = self.size
        self._reserve(start + n)
        values = {
            "image_ids": image_ids,
            "product_ids": attrs.product_ids,
            "category_ids": attrs.category_ids,
            "prices": attrs.prices,
            "in_stock": attrs.in_stock,
            "alive": np.ones(n, dtype=bool),
        }
        for name, vals in values.items():
            if name in INT_COLUMNS:
                self._widen(name, vals)
            self.data[name][start : start + n] = vals
        self.size = start + n
        return np.arange(start, start + n, dtype=np.int64)

    def taken(self, slots: np.ndarray) -> Columns:
        """New columns of the given slots (in this order) as slots 0..len-1; these stay."""
        taken = Columns(capacity=0)
        taken.data = {name: np.ascontiguousarray(col[slots]) for name, col in self.data.items()}
        taken.size = len(slots)
        return taken

    def attrs(self, slots: np.ndarray) -> VectorAttrs:
        return VectorAttrs.build(
            self.data["product_ids"][slots],
            self.data["category_ids"][slots],
            self.data["prices"][slots],
            self.data["in_stock"][slots],
        )

    def filter_mask(self, flt: SearchFilter | None) -> np.ndarray:
        """Slots that are alive and match the filter, as a bool mask over [0, size)."""
        mask = self["alive"].copy()
        if flt is None or flt.is_empty:
            return mask
        if flt.category_ids is not None:
            cats = np.fromiter(flt.category_ids, dtype=np.int64, count=len(flt.category_ids))
            mask &= np.isin(self["category_ids"], cats)
        if flt.min_price is not None:
            mask &= self["prices"] >= np.float32(flt.min_price)
        if flt.max_price is not None:
            mask &= self["prices"] <= np.float32(flt.max_price)
        if flt.in_stock is not None:
            mask &= self["in_stock"] == flt.in_stock
        return mask

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {name: self[name] for name in ALL_COLUMNS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Columns:
        size = len(arrays["alive"])
        cols = cls(capacity=0)
        cols.data = {name: np.ascontiguousarray(arrays[name]) for name in ALL_COLUMNS}
        if any(len(col) != size for col in cols.data.values()):
            raise ValueError("columns have different lengths")
        cols.size = size
        return cols

    def _reserve(self, needed: int) -> None:
        capacity = len(self.data["alive"])
        if needed <= capacity:
            return
        new_capacity = max(needed, 2 * capacity, 1024)
        for name, col in self.data.items():
            grown = np.zeros(new_capacity, dtype=col.dtype)
            grown[: self.size] = col[: self.size]
            self.data[name] = grown

    def _widen(self, name: str, values: np.ndarray) -> None:
        col = self.data[name]
        dtype = narrowest_int_dtype(np.asarray(values), at_least=col.dtype)
        if dtype != col.dtype:
            self.data[name] = col.astype(dtype)


class IdLookup:
    """image id -> live slot.

    Slots of the compacted part are found by a vectorised binary search through an
    argsort ``order`` (4 bytes a vector, no sorted copy); slots added since the last
    compaction sit in a small dict that wins over the sorted part.
    """

    def __init__(self) -> None:
        self.order = np.zeros(0, dtype=np.int32)
        self.recent: dict[int, int] = {}

    def rebuild(self, image_ids: np.ndarray, alive: np.ndarray) -> None:
        """Index all slots; among equal ids the live slot sorts last."""
        order = np.lexsort((alive, image_ids))
        dtype = np.int32 if len(order) < 2**31 else np.int64
        self.order = order.astype(dtype)
        self.recent = {}

    def add_recent(self, image_ids: np.ndarray, slots: np.ndarray) -> None:
        self.recent.update(zip(image_ids.tolist(), slots.tolist(), strict=True))

    def find(self, image_ids: np.ndarray, cols: Columns) -> np.ndarray:
        """Live slot of each id, -1 where the id is absent or deleted."""
        ids = np.asarray(image_ids, dtype=np.int64)
        col = cols.data["image_ids"]
        alive = cols.data["alive"]
        out = np.full(len(ids), -1, dtype=np.int64)
        n = len(self.order)
        if n:
            lo = np.zeros(len(ids), dtype=np.int64)
            hi = np.full(len(ids), n, dtype=np.int64)
            # last position whose id <= target (side="right" - 1)
            while True:
                active = lo < hi
                if not active.any():
                    break
                mid = (lo + hi) // 2
                go_right = active & (col[self.order[np.minimum(mid, n - 1)]] <= ids)
                lo = np.where(go_right, mid + 1, lo)
                hi = np.where(active & ~go_right, mid, hi)
            pos = lo - 1
            found = pos >= 0
            slots = np.where(found, self.order[np.maximum(pos, 0)], 0).astype(np.int64)
            hit = found & (col[slots] == ids) & alive[slots]
            out[hit] = slots[hit]
        if self.recent:
            for i, image_id in enumerate(ids.tolist()):
                slot = self.recent.get(image_id)
                if slot is not None:
                    out[i] = slot if alive[slot] else -1
        return out
