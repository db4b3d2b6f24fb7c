"""The per-shard update log: one Redis Stream, key ``search:log:<shard>``.

Entries carry raw little-endian bytes with their dtype and shape (never pickle): ids int64,
vectors float32 (n, dim), product ids int64, categories int32, prices float32, in_stock
uint8. A reader follows the stream from any entry id; replicas read independently.
What may be trimmed is decided by the index lifecycle (workers/index/retention.py): never
past the newest artifact in the store or the position of a live replica.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import redis

from workers.index.types import VectorAttrs

logger = logging.getLogger(__name__)

FORMAT = b"1"
START = "0-0"


def log_key(shard: int) -> str:
    return f"search:log:{shard}"


def trimmed_key(shard: int) -> str:
    return f"search:log:{shard}:trimmed"


# XTRIM MINID and remember the newest id it removes: Redis records XDELs but not trims.
# Floors only move forward, so an entry still older than the floor is newer than any
# removed before it.
_TRIM_SCRIPT = """
local newest = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[1], '-', 'COUNT', 1)
if #newest == 0 then return 0 end
local removed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
redis.call('SET', KEYS[2], newest[1][1])
return removed
"""


def shard_for_product(product_id: int, n_shards: int) -> int:
    """Stable shard of a product (all its images together), independent of the process."""
    if n_shards <= 0:
        raise ValueError("n_shards must be positive")
    digest = hashlib.blake2b(int(product_id).to_bytes(8, "little", signed=True), digest_size=8)
    return int.from_bytes(digest.digest(), "little") % n_shards


def parse_id(entry_id: str | bytes) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def id_max(*ids: str) -> str:
    return max(ids, key=parse_id)


@dataclass(frozen=True)
class LogEntry:
    entry_id: str
    op: str  # "upsert" or "delete"
    ids: np.ndarray  # int64 (n,)
    model: str
    dim: int
    timestamp: float
    vectors: np.ndarray | None = None  # float32 (n, dim) for upserts
    attrs: VectorAttrs | None = None


class MalformedEntry(ValueError):
    pass


_COLUMNS = (
    ("product_ids", np.int64),
    ("category_ids", np.int32),
    ("prices", np.float32),
    ("in_stock", np.uint8),
)


@dataclass(frozen=True)
class Durability:
    """How many replicas must hold an appended entry before the append returns.

    Redis replicates asynchronously: a master that fails right after acknowledging an
    XADD may not have sent it yet, and the replica promoted in its place never had it.
    With `min_replicas` > 0 an append sends WAIT after the XADD and fails (NotReplicated)
    when fewer replicas confirm within `timeout_ms`; the entry may then be lost or not,
    and appending it again is harmless (replicas apply upserts and deletes idempotently).
    """

    min_replicas: int = 0
    timeout_ms: int = 500

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.timeout_ms <= 0:
            raise ValueError("min_replicas must be 0 or more and timeout_ms more than 0")


class NotReplicated(redis.RedisError):
    """An appended entry reached fewer replicas than Durability asks for, in time."""

    def __init__(self, key: str, entry_id: str, acked: int, durability: Durability) -> None:
        super().__init__(
            f"{key} entry {entry_id} reached {acked} of the {durability.min_replicas} "
            f"replica(s) required within {durability.timeout_ms} ms "
            "(REDIS_MIN_REPLICAS_ACK): it may be lost if the master fails; append it again"
        )
        self.entry_id = entry_id
        self.acked = acked


class UpdateLog:
    """Writer and reader of one shard's stream for one embedding model."""

    def __init__(
        self,
        client: redis.Redis,
        shard: int,
        model: str,
        dim: int,
        *,
        durability: Durability = Durability(),
    ) -> None:
        self.client = client
        self.shard = shard
        self.model = model
        self.dim = dim
        self.key = log_key(shard)
        self.durability = durability

    # ---------------------------------------------------------------- writes

    def append_upserts(self, ids: np.ndarray, vectors: np.ndarray, attrs: VectorAttrs) -> str:
        ids = np.ascontiguousarray(ids, dtype="<i8").reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        if vectors.shape != (len(ids), self.dim) or len(attrs) != len(ids):
            raise ValueError(f"expected {len(ids)} vectors of dim {self.dim} and as many attrs")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinity")
        fields = self._header("upsert", len(ids))
        fields.update(
            {
                b"ids": ids.tobytes(),
                b"vectors": vectors.tobytes(),
                b"dtype": b"float32",
                b"shape": f"{len(ids)},{self.dim}".encode(),
            }
        )
        for name, dtype in _COLUMNS:
            values = np.ascontiguousarray(
                getattr(attrs, name), dtype=np.dtype(dtype).newbyteorder("<")
            )
            fields[name.encode()] = values.tobytes()
        return self._add(fields)

    def append_deletes(self, ids: np.ndarray) -> str:
        ids = np.ascontiguousarray(ids, dtype="<i8").reshape(-1)
        fields = self._header("delete", len(ids))
        fields[b"ids"] = ids.tobytes()
        return self._add(fields)

    def _header(self, op: str, n: int) -> dict[bytes, bytes]:
        return {
            b"v": FORMAT,
            b"op": op.encode(),
            b"n": str(n).encode(),
            b"model": self.model.encode(),
            b"dim": str(self.dim).encode(),
            b"ts": repr(time.time()).encode(),
        }

    def _add(self, fields: dict[bytes, bytes]) -> str:
        wanted = self.durability.min_replicas
        if not wanted:
            return _text(self.client.xadd(self.key, fields))  # type: ignore[arg-type]
        # One round trip: WAIT counts the replicas that have everything up to the XADD.
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(self.key, fields)  # type: ignore[arg-type]
        pipe.wait(wanted, self.durability.timeout_ms)
        raw_id, acked = pipe.execute()
        entry_id = _text(raw_id)
        if int(acked) < wanted:
            raise NotReplicated(self.key, entry_id, int(acked), self.durability)
        return entry_id

    # ----------------------------------------------------------------- reads

    def read(
        self, after: str = START, count: int = 100, block_ms: int | None = None
    ) -> list[LogEntry]:
        """Valid entries after `after`, oldest first; malformed ones are logged and skipped."""
        return self.read_batch(after, count, block_ms)[0]

    def read_batch(
        self, after: str = START, count: int = 100, block_ms: int | None = None
    ) -> tuple[list[LogEntry], str]:
        """(valid entries, id of the last entry read): readers move past malformed entries too."""
        reply = self.client.xread({self.key: after}, count=count, block=block_ms)
        entries: list[LogEntry] = []
        last = after
        # RESP2 (every client here): [[key, [(id, fields), ...]]], or None when none came
        streams = reply if isinstance(reply, list) else []
        for _key, items in streams:
            for raw_id, fields in items:
                entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                last = entry_id
                try:
                    entries.append(decode_entry(entry_id, fields))
                except (MalformedEntry, ValueError, KeyError, UnicodeDecodeError) as exc:
                    logger.error(
                        "skipping malformed log entry %s on %s: %s", entry_id, self.key, exc
                    )
        return entries, last

    def last_id(self) -> str:
        """Id of the newest entry (START when empty): the position a build covers."""
        newest = self.client.xrevrange(self.key, count=1)
        if not newest:
            return START
        raw = newest[0][0]
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def length(self) -> int:
        return int(self.client.xlen(self.key))

    # ------------------------------------------------------------ retention

    def trimmed_through(self) -> str:
        """The newest entry id ever removed from the stream (START when none was).

        A state that covers position P can be brought up to date from the log only if
        nothing after P was removed: ``covers(P)``. Trims record what they removed
        (`trim_before`); Redis itself records XDELs (XINFO STREAM max-deleted-entry-id).
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.get(trimmed_key(self.shard))
        pipe.xinfo_stream(self.key)
        recorded, info = pipe.execute(raise_on_error=False)
        found = [START]
        if isinstance(recorded, bytes | str):
            try:
                parse_id(recorded)
                found.append(_text(recorded))
            except ValueError:
                logger.warning("ignoring malformed %s: %r", trimmed_key(self.shard), recorded)
        if isinstance(info, dict) and info.get("max-deleted-entry-id") is not None:
            found.append(_text(info["max-deleted-entry-id"]))
        return id_max(*found)

    def covers(self, position: str) -> bool:
        """True when every entry after `position` is still in the log (no gap to replay)."""
        return parse_id(self.trimmed_through()) <= parse_id(position)

    def first_id(self) -> str | None:
        oldest = self.client.xrange(self.key, count=1)
        return _text(oldest[0][0]) if oldest and oldest[0][0] is not None else None

    def trim_before(self, floor: str) -> int:
        """Drop the entries older than `floor` (the caller decides what is safe to drop)."""
        if parse_id(floor) <= (0, 0):
            return 0
        # MINID keeps entries with id >= floor (the entry *at* a position is already applied;
        # keeping it is harmless); the newest entry removed is recorded in the same step.
        trim = self.client.register_script(_TRIM_SCRIPT)
        return int(trim(keys=[self.key, trimmed_key(self.shard)], args=[floor]))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_entry(entry_id: str, fields: dict[bytes, bytes]) -> LogEntry:
    """Validate and decode one stream entry; raises MalformedEntry on anything unexpected."""
    try:
        if fields.get(b"v") != FORMAT:
            raise MalformedEntry(f"unknown format {fields.get(b'v')!r}")
        op = fields[b"op"].decode()
        n = int(fields[b"n"])
        model = fields[b"model"].decode()
        dim = int(fields[b"dim"])
        ts = float(fields[b"ts"])
        ids = _array(fields[b"ids"], "<i8", (n,))
    except KeyError as exc:
        raise MalformedEntry(f"missing field {exc}") from exc
    if op == "delete":
        return LogEntry(entry_id, op, ids, model, dim, ts)
    if op != "upsert":
        raise MalformedEntry(f"unknown op {op!r}")
    if fields.get(b"dtype") != b"float32" or fields.get(b"shape") != f"{n},{dim}".encode():
        raise MalformedEntry("vector dtype/shape header does not match")
    vectors = _array(fields[b"vectors"], "<f4", (n, dim))
    if not np.isfinite(vectors).all():
        raise MalformedEntry("non-finite vector values")
    cols = {name: _array(fields[name.encode()], dtype, (n,)) for name, dtype in _COLUMNS}
    attrs = VectorAttrs.build(
        cols["product_ids"], cols["category_ids"], cols["prices"], cols["in_stock"].astype(bool)
    )
    return LogEntry(entry_id, op, ids, model, dim, ts, vectors, attrs)


def _array(raw: bytes, dtype: npt.DTypeLike, shape: tuple[int, ...]) -> np.ndarray:
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if not isinstance(raw, bytes) or len(raw) != expected:
        raise MalformedEntry(f"expected {expected} bytes for {dtype}{shape}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
