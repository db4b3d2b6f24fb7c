"""Requests and replies to msgpack maps carrying raw little-endian arrays, never pickle."""

from __future__ import annotations

import msgpack
import numpy as np

from workers.rpc.protocol.messages import (
    F32,
    I64,
    VERSION,
    Embedding,
    ImageQuery,
    Reply,
    Request,
    SearchHits,
    SearchQuery,
    TextQuery,
)

# ---------------------------------------------------------------- encoding


def _shape_list(arr: np.ndarray) -> list[int]:
    return [int(s) for s in arr.shape]


def encode_request(request: Request) -> bytes:
    payload = request.payload
    if isinstance(payload, SearchQuery):
        queries = np.ascontiguousarray(payload.queries, dtype=F32)
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
        scores = np.ascontiguousarray(payload.scores, dtype=F32)
        body = {
            "type": "hits",
            "shape": _shape_list(scores),
            "product_ids": np.ascontiguousarray(payload.product_ids, dtype=I64).tobytes(),
            "image_ids": np.ascontiguousarray(payload.image_ids, dtype=I64).tobytes(),
            "scores": scores.tobytes(),
        }
    elif isinstance(payload, Embedding):
        vector = np.ascontiguousarray(payload.vector, dtype=F32).reshape(-1)
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
