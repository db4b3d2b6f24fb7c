"""The CLIP encoder of this process: loaded once (at worker start or first use), then shared."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.config import ImageLimits
    from workers.encoding.encoder import ClipEncoder

_lock = threading.Lock()
_encoder: ClipEncoder | None = None


def process_encoder(
    name: str,
    fallback_dir: str,
    *,
    batch_size: int = 32,
    bf16: bool = False,
    compile: bool = False,
    limits: ImageLimits | None = None,
) -> ClipEncoder:
    """Load the model on the first call; every later call returns the same encoder."""
    global _encoder
    with _lock:
        if _encoder is None:
            from workers.encoding.encoder import load_encoder_with_fallback

            _encoder = load_encoder_with_fallback(
                name,
                fallback_dir,
                batch_size=batch_size,
                bf16=bf16,
                compile=compile,
                limits=limits,
            )
        return _encoder
