"""The encode side of the RPC: a batch handler turning text and image queries into vectors.

The web process never loads torch: it sends queries here (`EncodeClient`), or, in a small
deployment, encodes in-process with `LocalEncoder`, which has the same methods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Protocol

import numpy as np
import redis
from PIL import Image

from workers.encoding.errors import ImageRejected
from workers.encoding.images import ImageLimits, load_image_bytes
from workers.rpc.cache import QueryEmbeddingCache as QueryEmbeddingCache
from workers.rpc.errors import BadRequest
from workers.rpc.protocol import (
    ERROR_BAD_REQUEST,
    Embedding,
    ImageQuery,
    Reply,
    Request,
    TextQuery,
)
from workers.rpc.server import Handler

log = logging.getLogger(__name__)

ENCODE_QUEUE_KEY = "search:rpc:encode"


class Encoder(Protocol):
    """What the handler needs from the CLIP encoder (loaded once per worker process)."""

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...

    def encode_images(self, images: list[Image.Image]) -> np.ndarray: ...


def decode_image(data: bytes, *, limits: ImageLimits | None = None) -> Image.Image:
    """The default decoder: the project's one image loader (formats, byte and pixel caps
    checked before decoding, EXIF orientation, RGB), so queries and catalog images are
    decoded alike. Raises ImageRejected with a reason code."""
    return load_image_bytes(data, limits=limits).image


def _default_decode(encoder: Encoder) -> Callable[[bytes], Image.Image]:
    """`decode_image` under the encoder's own limits (they know the real input size of its
    model), so a query whose resize would cost too much is refused before decoding."""
    limits = getattr(encoder, "limits", None)
    return partial(decode_image, limits=limits if isinstance(limits, ImageLimits) else None)


def _rejection(exc: Exception) -> str:
    if isinstance(exc, ImageRejected):
        return f"image rejected ({exc.reason_code}): {exc.message}"
    return f"image rejected: {exc}"


def _model_name(encoder: Encoder, model: str | None) -> str:
    name = model or getattr(encoder, "model_name", None)
    if not isinstance(name, str) or not name:
        raise ValueError("pass model=<name> or give the encoder a model_name attribute")
    return name


def _vectors(encoded: object, n: int) -> np.ndarray:
    vectors = np.ascontiguousarray(encoded, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != n:
        raise ValueError(f"encoder returned shape {vectors.shape} for {n} inputs")
    return vectors


def make_encode_handler(
    encoder: Encoder,
    *,
    model: str | None = None,
    decode: Callable[[bytes], Image.Image] | None = None,
) -> Handler:
    """A batch handler for `RpcServer`: all texts of a batch in one encoder call, all images
    in another. A rejected image gets a bad-request reply naming why; `decode` may raise
    ImageRejected or ValueError for that."""
    model_name = _model_name(encoder, model)
    decode = decode or _default_decode(encoder)

    def handle(requests: list[Request]) -> list[Reply]:
        replies: list[Reply | None] = [None] * len(requests)
        texts: list[tuple[int, str]] = []
        images: list[tuple[int, Image.Image]] = []
        for i, request in enumerate(requests):
            query = request.payload
            if isinstance(query, TextQuery):
                texts.append((i, query.text))
            elif isinstance(query, ImageQuery):
                try:
                    images.append((i, decode(query.data)))
                except (ImageRejected, ValueError) as exc:
                    replies[i] = Reply.failure(request.id, _rejection(exc), kind=ERROR_BAD_REQUEST)
                except Exception as exc:
                    log.exception("encode: image decoder failed (trace %s)", request.trace_id)
                    replies[i] = Reply.failure(request.id, f"image decoding failed: {exc}")
            else:
                replies[i] = Reply.failure(
                    request.id,
                    f"an encoder does not serve {request.kind!r}",
                    kind=ERROR_BAD_REQUEST,
                )
        batches: tuple[tuple[list[int], Callable[[], np.ndarray], str], ...] = (
            ([i for i, _ in texts], lambda: encoder.encode_texts([t for _, t in texts]), "texts"),
            (
                [i for i, _ in images],
                lambda: encoder.encode_images([m for _, m in images]),
                "images",
            ),
        )
        for items, encode, what in batches:
            if not items:
                continue
            try:
                vectors = _vectors(encode(), len(items))
            except Exception as exc:
                log.exception("encode: encoding %d %s failed", len(items), what)
                for i in items:
                    replies[i] = Reply.failure(requests[i].id, f"encoding failed: {exc}")
                continue
            for row, i in enumerate(items):
                replies[i] = Reply(
                    id=requests[i].id, payload=Embedding(vector=vectors[row], model=model_name)
                )
        return [reply for reply in replies if reply is not None]

    return handle


class LocalEncoder:
    """Encodes queries in the calling process (small deployments): `EncodeClient`'s methods,
    same cache, same errors, no RPC."""

    def __init__(
        self,
        encoder: Encoder,
        *,
        model: str | None = None,
        cache: QueryEmbeddingCache | None = None,
        decode: Callable[[bytes], Image.Image] | None = None,
    ) -> None:
        self.encoder = encoder
        self.model = _model_name(encoder, model)
        self.cache = cache
        self.decode = decode or _default_decode(encoder)

    def encode_text(
        self, text: str, timeout_s: float | None = None, *, trace_id: str = ""
    ) -> np.ndarray:
        return self._cached("text", text, lambda: self.encoder.encode_texts([text]))

    def encode_image(
        self, data: bytes, timeout_s: float | None = None, *, trace_id: str = ""
    ) -> np.ndarray:
        def run() -> np.ndarray:
            try:
                image = self.decode(data)
            except (ImageRejected, ValueError) as exc:
                raise BadRequest(_rejection(exc)) from exc
            return self.encoder.encode_images([image])

        return self._cached("image", data, run)

    def _cached(self, kind: str, content: str | bytes, run: Callable[[], object]) -> np.ndarray:
        # The cache is an optimisation here: with Redis down, encode anyway.
        cache = self.cache
        if cache is not None:
            try:
                cached = cache.get(kind, content)
            except redis.RedisError as exc:
                log.warning("encode: query cache unreachable: %s", exc)
                cache = None
            else:
                if cached is not None:
                    return cached
        vector = _vectors(run(), 1)[0]
        if cache is not None and cache.model == self.model:
            try:
                cache.put(kind, content, vector)
            except redis.RedisError as exc:
                log.warning("encode: could not cache a query vector: %s", exc)
        return vector
