"""The RPC's messages: what a request and a reply carry, and the names on the wire."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from workers.config import ProtocolLimits
from workers.index.types import SearchFilter

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

F32 = np.dtype("<f4")  # arrays travel little-endian whatever the host's order
I64 = np.dtype("<i8")


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
