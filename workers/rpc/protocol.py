"""Wire format of the query RPC: msgpack maps carrying raw little-endian arrays, never pickle.

Whatever is read from Redis is untrusted: decoding checks every field's presence, type,
size and shape against `ProtocolLimits` and raises `ProtocolError` on anything else, so a
worker never acts on half-understood input and a client never merges a corrupt reply.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import ClassVar

import msgpack
import numpy as np

from workers.config import ProtocolLimits
from workers.index.types import SearchFilter
from workers.rpc.errors import ProtocolError

VERSION = 1
REPLY_KEY_PREFIX = "search:rpc:reply:"
# Pushed to `reply_to + DONE_SUFFIX` with the last of a request's `expect` replies, so a
# caller that fanned out to several lists blocks once for all of them, not once a reply.
DONE_SUFFIX = ":done"
MAX_EXPECT = 4096

KIND_SEARCH = "search"
KIND_ENCODE_TEXT = "encode_text"
KIND_ENCODE_IMAGE = "encode_image"

ERROR_BAD_REQUEST = "bad_request"
ERROR_INTERNAL = "internal"
ERROR_KINDS = frozenset({ERROR_BAD_REQUEST, ERROR_INTERNAL})

_F32 = np.dtype("<f4")
_I64 = np.dtype("<i8")
_NATIVE = {dtype: dtype.newbyteorder("=") for dtype in (_F32, _I64)}
_LITTLE_ENDIAN = sys.byteorder == "little"
_MAX = np.maximum.reduce  # ndarray.max() minus its Python wrapper


DEFAULT_LIMITS = ProtocolLimits()  # processes pass their configured limits (WorkerConfig)


# ---------------------------------------------------------------- request payloads


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """n query vectors searched for their top-k products under one filter."""

    KIND: ClassVar[str] = KIND_SEARCH
    queries: np.ndarray  # float32 (n, d), C-contiguous
    k: int
    filters: SearchFilter = field(default_factory=SearchFilter)


@dataclass(frozen=True, slots=True)
class TextQuery:
    KIND: ClassVar[str] = KIND_ENCODE_TEXT
    text: str


@dataclass(frozen=True, slots=True)
class ImageQuery:
    KIND: ClassVar[str] = KIND_ENCODE_IMAGE
    data: bytes  # the encoded image file (JPEG, PNG, ...), decoded by the worker


RequestPayload = SearchQuery | TextQuery | ImageQuery


@dataclass(frozen=True, slots=True)
class Request:
    """One unit of work: answered by pushing a Reply to `reply_to` before `deadline`."""

    id: str
    reply_to: str
    deadline: float  # absolute unix time (time.time()); later than this, nobody listens
    payload: RequestPayload
    trace_id: str = ""
    expect: int = 1  # replies the caller waits for on reply_to (one per list it pushed to)

    @property
    def kind(self) -> str:
        return self.payload.KIND

    @property
    def done_key(self) -> str:
        return self.reply_to + DONE_SUFFIX


# ---------------------------------------------------------------- reply payloads


@dataclass(frozen=True, slots=True)
class SearchHits:
    """One shard's top-k for each query of a request, padded with id -1 / score -inf."""

    product_ids: np.ndarray  # int64 (q, k)
    image_ids: np.ndarray  # int64 (q, k)
    scores: np.ndarray  # float32 (q, k)


@dataclass(frozen=True, slots=True)
class Embedding:
    vector: np.ndarray  # float32 (dim,)
    model: str


ReplyPayload = SearchHits | Embedding


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to one request: a payload, or an error message and its kind."""

    id: str
    payload: ReplyPayload | None = None
    error: str | None = None
    error_kind: str | None = None  # ERROR_BAD_REQUEST or ERROR_INTERNAL when error is set
    shard: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failure(
        cls,
        request_id: str,
        message: str,
        *,
        kind: str = ERROR_INTERNAL,
        shard: int | None = None,
    ) -> Reply:
        return cls(id=request_id, error=message, error_kind=kind, shard=shard)


# ---------------------------------------------------------------- encoding


def _shape_list(arr: np.ndarray) -> list[int]:
    return [int(s) for s in arr.shape]


def encode_request(request: Request) -> bytes:
    payload = request.payload
    if isinstance(payload, SearchQuery):
        queries = np.ascontiguousarray(payload.queries, dtype=_F32)
        if queries.ndim != 2:
            raise ValueError(f"queries must be 2-d (n, d), got shape {queries.shape}")
        body: dict[str, object] = {
            "queries": queries.tobytes(),
            "shape": _shape_list(queries),
            "k": int(payload.k),
            "filters": payload.filters.to_dict(),
        }
    elif isinstance(payload, TextQuery):
        body = {"text": payload.text}
    elif isinstance(payload, ImageQuery):
        body = {"image": bytes(payload.data)}
    else:
        raise TypeError(f"unknown request payload {type(payload).__name__}")
    return msgpack.packb(
        {
            "v": VERSION,
            "id": request.id,
            "kind": request.kind,
            "reply_to": request.reply_to,
            "deadline": float(request.deadline),
            "trace_id": request.trace_id,
            "expect": int(request.expect),
            "payload": body,
        },
        use_bin_type=True,
    )


def encode_reply(reply: Reply) -> bytes:
    payload = reply.payload
    body: dict[str, object] | None
    if payload is None:
        body = None
    elif isinstance(payload, SearchHits):
        scores = np.ascontiguousarray(payload.scores, dtype=_F32)
        body = {
            "type": "hits",
            "shape": _shape_list(scores),
            "product_ids": np.ascontiguousarray(payload.product_ids, dtype=_I64).tobytes(),
            "image_ids": np.ascontiguousarray(payload.image_ids, dtype=_I64).tobytes(),
            "scores": scores.tobytes(),
        }
    elif isinstance(payload, Embedding):
        vector = np.ascontiguousarray(payload.vector, dtype=_F32).reshape(-1)
        body = {
            "type": "embedding",
            "dim": int(vector.shape[0]),
            "model": payload.model,
            "vector": vector.tobytes(),
        }
    else:
        raise TypeError(f"unknown reply payload {type(payload).__name__}")
    return msgpack.packb(
        {
            "v": VERSION,
            "id": reply.id,
            "shard": reply.shard,
            "error": reply.error,
            "error_kind": reply.error_kind,
            "payload": body,
        },
        use_bin_type=True,
    )


# ---------------------------------------------------------------- strict decoding


def _unpack(raw: object, limits: ProtocolLimits) -> dict[str, object]:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise ProtocolError(f"message must be bytes, got {type(raw).__name__}")
    if len(raw) > limits.max_message_bytes:
        raise ProtocolError(f"message of {len(raw)} bytes exceeds {limits.max_message_bytes}")
    try:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"not a msgpack message: {exc}") from exc
    obj = _map(obj, "message")
    version = obj.get("v")
    if version != VERSION or isinstance(version, bool):
        raise ProtocolError(f"unsupported protocol version {version!r}")
    return obj


def _map(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{where} must be a map, got {type(value).__name__}")
    return value


def _exact_keys(obj: dict[str, object], keys: AbstractSet[str], where: str) -> None:
    if obj.keys() != keys:  # a set comparison of the keys view: no set is built
        missing, extra = sorted(keys - set(obj)), sorted(set(obj) - keys)
        raise ProtocolError(f"{where}: missing fields {missing}, unknown fields {extra}")


def _str(value: object, name: str, max_chars: int, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise ProtocolError(f"{name} longer than {max_chars} characters")
    if not value and not allow_empty:
        raise ProtocolError(f"{name} must not be empty")
    return value


def _int(value: object, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{name} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ProtocolError(f"{name}={value} outside [{lo}, {hi}]")
    return value


def _bytes(value: object, name: str, max_bytes: int) -> bytes:
    if not isinstance(value, bytes):
        raise ProtocolError(f"{name} must be binary, got {type(value).__name__}")
    if len(value) > max_bytes:
        raise ProtocolError(f"{name} of {len(value)} bytes exceeds {max_bytes}")
    return value


def _shape2(value: object, name: str, max_rows: int, max_cols: int) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ProtocolError(f"{name} must be a list of two integers")
    return (
        _int(value[0], f"{name}[0]", 1, max_rows),
        _int(value[1], f"{name}[1]", 1, max_cols),
    )


def _array(data: object, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A native array from raw bytes whose length must match the shape exactly: read-only,
    over the message's bytes where the host is little-endian (every reader copies what
    it keeps: the search normalises its queries, the merge takes its rows)."""
    if not isinstance(data, bytes):
        raise ProtocolError(f"{name} must be binary, got {type(data).__name__}")
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise ProtocolError(f"{name} has {len(data)} bytes, shape {shape} needs {expected}")
    if _LITTLE_ENDIAN:
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    return np.frombuffer(data, dtype=dtype).astype(_NATIVE[dtype]).reshape(shape)


def _request_header(obj: dict[str, object], limits: ProtocolLimits) -> tuple[str, str, float, str]:
    request_id = _str(obj["id"], "id", limits.max_id_chars)
    reply_to = _str(obj["reply_to"], "reply_to", len(REPLY_KEY_PREFIX) + limits.max_id_chars)
    if not reply_to.startswith(REPLY_KEY_PREFIX) or reply_to == REPLY_KEY_PREFIX:
        raise ProtocolError(f"reply_to must be a key under {REPLY_KEY_PREFIX!r}")
    deadline = obj["deadline"]
    if isinstance(deadline, bool) or not isinstance(deadline, int | float):
        raise ProtocolError("deadline must be a number")
    if not math.isfinite(deadline) or deadline <= 0:
        raise ProtocolError("deadline must be a positive finite unix time")
    trace_id = _str(obj["trace_id"], "trace_id", limits.max_id_chars, allow_empty=True)
    return request_id, reply_to, float(deadline), trace_id


_SEARCH_KEYS = frozenset({"queries", "shape", "k", "filters"})
_TEXT_KEYS = frozenset({"text"})
_IMAGE_KEYS = frozenset({"image"})
_HITS_KEYS = frozenset({"type", "shape", "product_ids", "image_ids", "scores"})
_EMBEDDING_KEYS = frozenset({"type", "dim", "model", "vector"})
_REPLY_KEYS = frozenset({"v", "id", "shard", "error", "error_kind", "payload"})


def _search_query(body: dict[str, object], limits: ProtocolLimits) -> SearchQuery:
    _exact_keys(body, _SEARCH_KEYS, "search payload")
    shape = _shape2(body["shape"], "shape", limits.max_queries, limits.max_dim)
    queries = _array(body["queries"], "queries", _F32, shape)
    if not np.isfinite(queries).all():
        raise ProtocolError("queries contain NaN or infinity")
    k = _int(body["k"], "k", 1, limits.max_k)
    raw_filters = body["filters"]
    if raw_filters is None or raw_filters == _NO_FILTER_WIRE:  # most searches: no filter
        return SearchQuery(queries, k, _NO_FILTER)
    if not isinstance(raw_filters, dict):
        raise ProtocolError("filters must be a map or nil")
    try:
        filters = SearchFilter.from_dict(raw_filters)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"bad filters: {exc}") from exc
    return SearchQuery(queries, k, filters)


_NO_FILTER = SearchFilter()
_NO_FILTER_WIRE = _NO_FILTER.to_dict()
_REQUEST_KEYS = frozenset({"v", "id", "kind", "reply_to", "deadline", "trace_id", "payload"})
_REQUEST_KEYS_EXPECT = _REQUEST_KEYS | {"expect"}


def decode_request(raw: object, limits: ProtocolLimits = DEFAULT_LIMITS) -> Request:
    """Parse and check one request; raises ProtocolError on anything malformed."""
    obj = _unpack(raw, limits)
    if obj.keys() == _REQUEST_KEYS_EXPECT:
        expect = _int(obj["expect"], "expect", 1, MAX_EXPECT)
    else:  # a caller from before `expect` waits for its replies one by one
        _exact_keys(obj, _REQUEST_KEYS_EXPECT if "expect" in obj else _REQUEST_KEYS, "request")
        expect = 1
    request_id, reply_to, deadline, trace_id = _request_header(obj, limits)
    body = _map(obj["payload"], "payload")
    kind = obj["kind"]
    payload: RequestPayload
    if kind == KIND_SEARCH:
        payload = _search_query(body, limits)
    elif kind == KIND_ENCODE_TEXT:
        _exact_keys(body, _TEXT_KEYS, "encode_text payload")
        payload = TextQuery(text=_str(body["text"], "text", limits.max_text_chars))
    elif kind == KIND_ENCODE_IMAGE:
        _exact_keys(body, _IMAGE_KEYS, "encode_image payload")
        data = _bytes(body["image"], "image", limits.max_image_bytes)
        if not data:
            raise ProtocolError("image must not be empty")
        payload = ImageQuery(data=data)
    else:
        raise ProtocolError(f"unknown request kind {kind!r}")
    return Request(request_id, reply_to, deadline, payload, trace_id, expect)


def _hits(body: dict[str, object], limits: ProtocolLimits) -> SearchHits:
    _exact_keys(body, _HITS_KEYS, "hits payload")
    shape = _shape2(body["shape"], "shape", limits.max_queries, limits.max_k)
    scores = _array(body["scores"], "scores", _F32, shape)
    if not _MAX(scores, axis=None) < np.inf:  # NaN if any score is: one pass catches both
        raise ProtocolError("scores contain NaN or +infinity")
    return SearchHits(
        _array(body["product_ids"], "product_ids", _I64, shape),
        _array(body["image_ids"], "image_ids", _I64, shape),
        scores,
    )


def _embedding(body: dict[str, object], limits: ProtocolLimits) -> Embedding:
    _exact_keys(body, _EMBEDDING_KEYS, "embedding payload")
    dim = _int(body["dim"], "dim", 1, limits.max_dim)
    vector = _array(body["vector"], "vector", _F32, (dim,)).copy()  # the caller's to keep
    if not np.isfinite(vector).all():
        raise ProtocolError("vector contains NaN or infinity")
    return Embedding(vector=vector, model=_str(body["model"], "model", limits.max_id_chars))


def decode_reply(raw: object, limits: ProtocolLimits = DEFAULT_LIMITS) -> Reply:
    """Parse and check one reply; raises ProtocolError on anything malformed."""
    obj = _unpack(raw, limits)
    _exact_keys(obj, _REPLY_KEYS, "reply")
    request_id = _str(obj["id"], "id", limits.max_id_chars)
    shard = obj["shard"]
    if shard is not None:
        shard = _int(shard, "shard", 0, 1 << 20)
    error, error_kind, body = obj["error"], obj["error_kind"], obj["payload"]
    if error is not None:
        message = _str(error, "error", 4096, allow_empty=True)
        if error_kind not in ERROR_KINDS or body is not None:
            raise ProtocolError("an error reply needs a known error_kind and no payload")
        return Reply.failure(request_id, message, kind=str(error_kind), shard=shard)
    if error_kind is not None:
        raise ProtocolError("error_kind without error")
    body = _map(body, "payload")
    payload: ReplyPayload
    if body.get("type") == "hits":
        payload = _hits(body, limits)
    elif body.get("type") == "embedding":
        payload = _embedding(body, limits)
    else:
        raise ProtocolError(f"unknown reply payload type {body.get('type')!r}")
    return Reply(id=request_id, payload=payload, shard=shard)
