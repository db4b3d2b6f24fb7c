"""The wire format: exact round trips, and strict refusal of anything malformed."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.index.types import SearchFilter
from workers.rpc.protocol import (
    DEFAULT_LIMITS,
    REPLY_KEY_PREFIX,
    Embedding,
    ImageQuery,
    ProtocolError,
    Reply,
    Request,
    SearchHits,
    SearchQuery,
    TextQuery,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)


def search_request(n: int = 2, d: int = 8, k: int = 5) -> Request:
    queries = np.random.default_rng(0).standard_normal((n, d), dtype=np.float32)
    return Request(
        id="req1",
        reply_to=REPLY_KEY_PREFIX + "req1",
        deadline=time.time() + 5,
        payload=SearchQuery(
            queries=queries, k=k, filters=SearchFilter(category_ids=frozenset({3}), in_stock=True)
        ),
        trace_id="trace-9",
    )


def test_search_request_round_trip() -> None:
    request = search_request()
    decoded = decode_request(encode_request(request))
    assert (decoded.id, decoded.reply_to, decoded.trace_id, decoded.kind) == (
        "req1",
        REPLY_KEY_PREFIX + "req1",
        "trace-9",
        "search",
    )
    assert decoded.deadline == request.deadline
    assert decoded.payload.k == 5
    assert decoded.payload.filters == request.payload.filters
    np.testing.assert_array_equal(decoded.payload.queries, request.payload.queries)
    assert decoded.payload.queries.dtype == np.float32
    assert decoded.payload.queries.flags.c_contiguous


@pytest.mark.parametrize("payload", [TextQuery(text="red boots"), ImageQuery(data=b"\x89PNG...")])
def test_encode_request_round_trip(payload: TextQuery | ImageQuery) -> None:
    request = Request(id="e", reply_to=REPLY_KEY_PREFIX + "e", deadline=1e10, payload=payload)
    assert decode_request(encode_request(request)) == request


def test_reply_round_trips() -> None:
    hits = SearchHits(
        product_ids=np.array([[4, -1]], dtype=np.int64),
        image_ids=np.array([[40, -1]], dtype=np.int64),
        scores=np.array([[0.5, -np.inf]], dtype=np.float32),
    )
    decoded = decode_reply(encode_reply(Reply(id="a", payload=hits, shard=1)))
    assert decoded.ok
    assert decoded.shard == 1
    for name in ("product_ids", "image_ids", "scores"):
        np.testing.assert_array_equal(getattr(decoded.payload, name), getattr(hits, name))
    vector = np.linspace(-1, 1, 16, dtype=np.float32)
    decoded = decode_reply(encode_reply(Reply(id="b", payload=Embedding(vector, "clip-b32"))))
    assert decoded.payload.model == "clip-b32"
    np.testing.assert_array_equal(decoded.payload.vector, vector)
    failure = decode_reply(encode_reply(Reply.failure("c", "bad image", kind="bad_request")))
    assert (failure.ok, failure.error, failure.error_kind) == (False, "bad image", "bad_request")


def _mutated(mutate: Callable[[dict], None]) -> bytes:
    wire = msgpack.unpackb(encode_request(search_request()), raw=False)
    mutate(wire)
    return msgpack.packb(wire, use_bin_type=True)


def _set(path: str, value: object) -> Callable[[dict], None]:
    def mutate(wire: dict) -> None:
        *parents, last = path.split(".")
        target = wire
        for key in parents:
            target = target[key]
        target[last] = value

    return mutate


MALFORMED_REQUESTS = {
    "garbage bytes": b"\xc1\xff\x00garbage",
    "truncated": encode_request(search_request())[:-7],
    "not a map": msgpack.packb([1, 2, 3]),
    "trailing bytes": encode_request(search_request()) + b"\x00",
    "deep nesting": b"\x91" * 5000 + b"\x00",
    "wrong version": _mutated(_set("v", 2)),
    "missing field": _mutated(lambda w: w.pop("deadline")),
    "unknown field": _mutated(_set("extra", 1)),
    "unknown kind": _mutated(_set("kind", "delete_everything")),
    "id not a string": _mutated(_set("id", 12)),
    "empty id": _mutated(_set("id", "")),
    "reply_to outside the reply keys": _mutated(_set("reply_to", "catalog:products")),
    "deadline a string": _mutated(_set("deadline", "soon")),
    "deadline NaN": _mutated(_set("deadline", float("nan"))),
    "k a string": _mutated(_set("payload.k", "5")),
    "k a boolean": _mutated(_set("payload.k", True)),
    "k zero": _mutated(_set("payload.k", 0)),
    "huge k": _mutated(_set("payload.k", 10**9)),
    "k beyond int64": _mutated(_set("payload.k", 2**64 - 1)),
    "shape not matching bytes": _mutated(_set("payload.shape", [3, 8])),
    "shape of three dims": _mutated(_set("payload.shape", [1, 2, 8])),
    "negative shape": _mutated(_set("payload.shape", [-2, -8])),
    "huge dimension": _mutated(_set("payload.shape", [1, 10**6])),
    "queries as text": _mutated(_set("payload.queries", "0.1,0.2")),
    "queries with NaN": _mutated(
        _set("payload.queries", np.full((2, 8), np.nan, np.float32).tobytes())
    ),
    "filters a list": _mutated(_set("payload.filters", [1, 2])),
    "filter of wrong type": _mutated(_set("payload.filters", {"min_price": "cheap"})),
    "unknown filter": _mutated(_set("payload.filters", {"colour": "red"})),
    "payload missing": _mutated(_set("payload", None)),
    "text payload on a search": _mutated(_set("kind", "encode_text")),
}


@pytest.mark.parametrize("raw", MALFORMED_REQUESTS.values(), ids=MALFORMED_REQUESTS.keys())
def test_malformed_requests_are_refused(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_request(raw)


def test_oversized_message_is_refused_before_parsing() -> None:
    raw = b"\x00" * (DEFAULT_LIMITS.max_message_bytes + 1)
    with pytest.raises(ProtocolError, match="exceeds"):
        decode_request(raw)


def test_non_bytes_are_refused() -> None:
    with pytest.raises(ProtocolError):
        decode_request("a string")  # type: ignore[arg-type]


def _reply_wire(**changes: object) -> bytes:
    hits = SearchHits(
        product_ids=np.zeros((1, 2), np.int64),
        image_ids=np.zeros((1, 2), np.int64),
        scores=np.zeros((1, 2), np.float32),
    )
    wire = msgpack.unpackb(encode_reply(Reply(id="r", payload=hits, shard=0)), raw=False)
    for key, value in changes.items():
        if key.startswith("payload."):
            wire["payload"][key.removeprefix("payload.")] = value
        else:
            wire[key] = value
    return msgpack.packb(wire, use_bin_type=True)


MALFORMED_REPLIES = {
    "scores NaN": _reply_wire(**{"payload.scores": np.full(2, np.nan, np.float32).tobytes()}),
    "one score NaN": _reply_wire(
        **{"payload.scores": np.array([np.nan, 0.5], np.float32).tobytes()}
    ),
    "a score +inf": _reply_wire(
        **{"payload.scores": np.array([0.5, np.inf], np.float32).tobytes()}
    ),
    "ids short": _reply_wire(**{"payload.product_ids": b"\x00" * 8}),
    "shape lies": _reply_wire(**{"payload.shape": [2, 2]}),
    "error without kind": _reply_wire(error="x", payload=None),
    "error with payload": _reply_wire(error="x", error_kind="internal"),
    "unknown payload type": _reply_wire(**{"payload.type": "pickle"}),
    "negative shard": _reply_wire(shard=-3),
}


@pytest.mark.parametrize("raw", MALFORMED_REPLIES.values(), ids=MALFORMED_REPLIES.keys())
def test_malformed_replies_are_refused(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_reply(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_protocol_errors(raw: bytes) -> None:
    for decode in (decode_request, decode_reply):
        with contextlib.suppress(ProtocolError):
            decode(raw)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**64 - 1)
        | st.floats()
        | st.text()
        | st.binary(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=20,
    )
)
def test_arbitrary_msgpack_values_raise_only_protocol_errors(value: object) -> None:
    raw = msgpack.packb(value, use_bin_type=True)
    for decode in (decode_request, decode_reply):
        with contextlib.suppress(ProtocolError):
            decode(raw)


REQUEST_FIELDS = [
    "id", "kind", "reply_to", "deadline", "trace_id",
    "payload.queries", "payload.shape", "payload.k", "payload.filters",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(REQUEST_FIELDS),
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=40)
    | st.binary(max_size=300)
    | st.lists(st.integers(min_value=-(2**31), max_value=2**31), max_size=4)
    | st.dictionaries(
        st.text(max_size=12),
        st.integers(min_value=-(2**63), max_value=2**63) | st.floats() | st.none(),
        max_size=4,
    ),
)
def test_one_corrupted_field_is_refused_or_still_valid(path: str, value: object) -> None:
    """Whatever one field is replaced with, decoding either refuses it or yields a valid request."""
    try:
        request = decode_request(_mutated(_set(path, value)))
    except ProtocolError:
        return
    query = request.payload
    assert isinstance(query, SearchQuery)
    assert query.queries.dtype == np.float32
    assert query.queries.ndim == 2
    assert np.isfinite(query.queries).all()
    assert 1 <= query.k <= DEFAULT_LIMITS.max_k
    assert request.reply_to.startswith(REPLY_KEY_PREFIX)


def test_expect_travels_and_old_requests_expect_one_reply() -> None:
    request = search_request()
    fanned = Request(
        id=request.id,
        reply_to=request.reply_to,
        deadline=request.deadline,
        payload=request.payload,
        expect=3,
    )
    decoded = decode_request(encode_request(fanned))
    assert (decoded.expect, decoded.done_key) == (3, request.reply_to + ":done")
    old = msgpack.unpackb(encode_request(request), raw=False)
    del old["expect"]  # a caller from before the field
    assert decode_request(msgpack.packb(old, use_bin_type=True)).expect == 1
    for bad in (0, -1, 5000, "2", True, None):
        hostile = {**old, "expect": bad}
        with pytest.raises(ProtocolError, match="expect"):
            decode_request(msgpack.packb(hostile, use_bin_type=True))
