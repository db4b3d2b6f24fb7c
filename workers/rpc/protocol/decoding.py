"""Strict decoding: whatever is read from Redis is untrusted."""

from __future__ import annotations

import math
import sys
from collections.abc import Set as AbstractSet

import msgpack
import numpy as np

from workers.config import ProtocolLimits
from workers.index.types import SearchFilter
from workers.rpc.errors import ProtocolError
from workers.rpc.protocol.messages import (
    DEFAULT_LIMITS,
    ERROR_KINDS,
    F32,
    I64,
    KIND_ENCODE_IMAGE,
    KIND_ENCODE_TEXT,
    KIND_SEARCH,
    MAX_EXPECT,
    REPLY_KEY_PREFIX,
    VERSION,
    Embedding,
    ImageQuery,
    Reply,
    ReplyPayload,
    Request,
    RequestPayload,
    SearchHits,
    SearchQuery,
    TextQuery,
)

_NATIVE = {dtype: dtype.newbyteorder("=") for dtype in (F32, I64)}
_LITTLE_ENDIAN = sys.byteorder == "little"
_MAX = np.maximum.reduce  # ndarray.max() minus its Python wrapper

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
    queries = _array(body["queries"], "queries", F32, shape)
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
    scores = _array(body["scores"], "scores", F32, shape)
    if not _MAX(scores, axis=None) < np.inf:  # NaN if any score is: one pass catches both
        raise ProtocolError("scores contain NaN or +infinity")
    return SearchHits(
        _array(body["product_ids"], "product_ids", I64, shape),
        _array(body["image_ids"], "image_ids", I64, shape),
        scores,
    )


def _embedding(body: dict[str, object], limits: ProtocolLimits) -> Embedding:
    _exact_keys(body, _EMBEDDING_KEYS, "embedding payload")
    dim = _int(body["dim"], "dim", 1, limits.max_dim)
    vector = _array(body["vector"], "vector", F32, (dim,)).copy()  # the caller's to keep
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
