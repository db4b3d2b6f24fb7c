"""Loading and preprocessing images in threads while the model runs.

JPEG decoding, resizing and normalising release the GIL for most of their time,
so a couple of threads keep the next batches ready while the forward pass of the
current one runs. Results come back in input order, one per source: an
EncodedItem with its vector, or a FailedItem saying why that source was skipped.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np
from PIL import Image

from workers.encoding.errors import ImageRejected
from workers.encoding.images import LoadedImage

if TYPE_CHECKING:
    from workers.encoding.encoder import ClipEncoder

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class EncodedItem(Generic[T]):
    """A source and its embedding; the image facts are set when `load` gave a LoadedImage."""

    source: T
    index: int  # position in the input
    vector: np.ndarray  # float32 (dim,), unit length
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None


@dataclass(frozen=True)
class FailedItem(Generic[T]):
    """A source that could not be encoded, and why (see ImageRejected for the codes).

    reason_code is `load_failed` / `preprocess_failed` for unexpected exceptions.
    """

    source: T
    index: int
    reason_code: str
    message: str
    transient: bool = False


@dataclass(frozen=True)
class _Ready(Generic[T]):
    source: T
    index: int
    pixels: np.ndarray  # float32 (3, H, W)
    loaded: LoadedImage | None


def _prepare(
    encoder: ClipEncoder, index: int, source: T, load: Callable[[T], Image.Image | LoadedImage]
) -> _Ready[T] | FailedItem[T]:
    """Runs in a pool thread: load one source and preprocess it, never raising."""
    try:
        result = load(source)
    except ImageRejected as exc:
        return FailedItem(source, index, exc.reason_code, exc.message, exc.transient)
    except Exception as exc:  # a bad source must not stop the batch
        log.warning("loading source %d failed unexpectedly", index, exc_info=True)
        return FailedItem(source, index, "load_failed", f"{type(exc).__name__}: {exc}")
    loaded = result if isinstance(result, LoadedImage) else None
    image = result.image if isinstance(result, LoadedImage) else result
    try:
        pixels = encoder.preprocess([image])[0]
    except ImageRejected as exc:
        return FailedItem(source, index, exc.reason_code, exc.message, exc.transient)
    except Exception as exc:
        log.warning("preprocessing source %d failed", index, exc_info=True)
        return FailedItem(source, index, "preprocess_failed", f"{type(exc).__name__}: {exc}")
    return _Ready(source, index, pixels, loaded)


def _encode_batch(
    encoder: ClipEncoder, pending: list[_Ready[T] | FailedItem[T]]
) -> Iterator[EncodedItem[T] | FailedItem[T]]:
    ready = [item for item in pending if isinstance(item, _Ready)]
    vectors = encoder.encode_pixels(np.stack([item.pixels for item in ready])) if ready else None
    row = 0
    for item in pending:
        if isinstance(item, FailedItem):
            yield item
            continue
        assert vectors is not None
        loaded = item.loaded
        yield EncodedItem(
            source=item.source,
            index=item.index,
            vector=vectors[row],
            sha256=loaded.sha256 if loaded else None,
            width=loaded.width if loaded else None,
            height=loaded.height if loaded else None,
            format=loaded.format if loaded else None,
        )
        row += 1


def run_pipeline(
    encoder: ClipEncoder,
    sources: Iterable[T],
    load: Callable[[T], Image.Image | LoadedImage],
    *,
    batch_size: int,
    threads: int = 2,
    prefetch_batches: int = 2,
) -> Iterator[EncodedItem[T] | FailedItem[T]]:
    """Yield one result per source, in order; up to `prefetch_batches` batches are
    loaded ahead of the one being encoded, which bounds memory."""
    if batch_size < 1 or threads < 1 or prefetch_batches < 1:
        raise ValueError("batch_size, threads and prefetch_batches must be >= 1")
    numbered = enumerate(sources)
    window: deque[Future[_Ready[T] | FailedItem[T]]] = deque()
    limit = batch_size * (prefetch_batches + 1)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="clip-load")

    def top_up() -> None:
        while len(window) < limit:
            nxt = next(numbered, None)
            if nxt is None:
                return
            window.append(pool.submit(_prepare, encoder, nxt[0], nxt[1], load))

    try:
        pending: list[_Ready[T] | FailedItem[T]] = []
        n_ready = 0
        top_up()
        while window:
            item = window.popleft().result()
            top_up()
            pending.append(item)
            if isinstance(item, _Ready):
                n_ready += 1
            if n_ready == batch_size:
                yield from _encode_batch(encoder, pending)
                pending, n_ready = [], 0
        if pending:
            yield from _encode_batch(encoder, pending)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
