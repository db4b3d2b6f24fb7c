"""What a shard holds, as one 64-bit hash per image id: the attributes its filters read.

Reconciliation compares the database with every replica of a shard. Ids alone miss a
vector whose price or stock changed in the database without an index update: searches
filtered on those attributes then answer wrongly with every id present. So each side
hashes, per image id, the columns the shard filters and groups on (product id, category
id, price, in stock), computed the same way from the database rows and from the shard's
columns, and the two digests are compared by id.

Inputs are coerced to the shard's column dtypes first (`VectorAttrs.build`: int64
products, int32 categories, float32 prices, bool stock), so a price the database holds as
a Decimal hashes like the float32 the shard stores. Django-free and vectorised; a digest
travels as raw little-endian bytes (ids, then hashes), never pickled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workers.index.types import VectorAttrs

ROW_BYTES = 16  # an int64 id and its uint64 hash
_SEED = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mixer (the splitmix64 finaliser), on a uint64 array; wraps."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def attr_hashes(attrs: VectorAttrs) -> np.ndarray:
    """One uint64 per row of `attrs`, equal exactly when every filter attribute is equal."""
    attrs = VectorAttrs.build(attrs.product_ids, attrs.category_ids, attrs.prices, attrs.in_stock)
    prices = attrs.prices + np.float32(0.0)  # -0.0 becomes 0.0: equal prices, equal bits
    low = prices.view(np.uint32).astype(np.uint64)
    low |= attrs.in_stock.astype(np.uint64) << np.uint64(32)
    h = _mix(attrs.product_ids.view(np.uint64) ^ _SEED)
    h = _mix(h ^ attrs.category_ids.astype(np.int64).view(np.uint64))
    return _mix(h ^ low)


@dataclass(frozen=True)
class Digest:
    """Image ids (int64, sorted, unique) and the attribute hash of each (uint64)."""

    ids: np.ndarray
    hashes: np.ndarray

    def __post_init__(self) -> None:
        if self.ids.dtype != np.int64 or self.hashes.dtype != np.uint64:
            raise TypeError("a digest holds int64 ids and uint64 hashes")
        if self.ids.shape != self.hashes.shape or self.ids.ndim != 1:
            raise ValueError("a digest's ids and hashes are two 1-d arrays of one length")

    @classmethod
    def of(cls, ids: np.ndarray, attrs: VectorAttrs) -> Digest:
        """The digest of rows in any order; an id given twice is refused."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(attrs) != len(ids):
            raise ValueError("ids and attrs must have the same length")
        hashes = attr_hashes(attrs)
        order = np.argsort(ids, kind="stable")
        ids, hashes = ids[order], hashes[order]
        if ids.size > 1 and not (ids[1:] > ids[:-1]).all():
            raise ValueError("an image id appears twice")
        return cls(ids, hashes)

    @classmethod
    def empty(cls) -> Digest:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64))

    def __len__(self) -> int:
        return int(self.ids.size)

    def to_bytes(self) -> bytes:
        return self.ids.astype("<i8").tobytes() + self.hashes.astype("<u8").tobytes()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Digest:
        if len(raw) % ROW_BYTES:
            raise ValueError(f"a digest is {ROW_BYTES} bytes a row, not {len(raw)} bytes")
        n = len(raw) // ROW_BYTES
        ids = np.frombuffer(raw, dtype="<i8", count=n).astype(np.int64)
        hashes = np.frombuffer(raw, dtype="<u8", count=n, offset=8 * n).astype(np.uint64)
        if n > 1 and not (ids[1:] > ids[:-1]).all():
            raise ValueError("a digest's ids must be sorted and unique")
        return cls(ids, hashes)


@dataclass(frozen=True)
class DigestDiff:
    """How a replica differs from what it should hold; each an int64 array of image ids."""

    missing: np.ndarray  # expected, absent from the replica
    extra: np.ndarray  # held by the replica, not expected
    stale: np.ndarray  # held by both, with different attributes

    @property
    def clean(self) -> bool:
        return not (self.missing.size or self.extra.size or self.stale.size)


def compare(expected: Digest, live: Digest) -> DigestDiff:
    """Missing, extra and stale ids of `live` against `expected` (sorted arrays)."""
    common, at_expected, at_live = np.intersect1d(
        expected.ids, live.ids, assume_unique=True, return_indices=True
    )
    stale = common[expected.hashes[at_expected] != live.hashes[at_live]]
    return DigestDiff(
        missing=np.setdiff1d(expected.ids, live.ids, assume_unique=True),
        extra=np.setdiff1d(live.ids, expected.ids, assume_unique=True),
        stale=stale,
    )
