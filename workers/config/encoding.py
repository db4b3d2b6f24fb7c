"""Caps on images from outside and how image URLs may be fetched (IMAGE_*)."""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.config.parse import env

# The shortest side CLIP's image processor resizes to; the encoder checks again with
# its own processor's value.
DEFAULT_INPUT_SIDE = 224


@dataclass(frozen=True)
class ImageLimits:
    """Caps applied to every image, in the web process and in the encoders alike.

    The pixel cap bounds the decode; the side, aspect and resized caps bound the
    resize to the model's input, which scales the *shortest* side to `input_side`:
    a 300000x1 strip is only 0.3 Mpx but would become 67200000x224.
    """

    max_bytes: int = field(default=20 * 1024 * 1024, metadata=env("IMAGE_MAX_BYTES"))
    max_pixels: int = field(default=40_000_000, metadata=env("IMAGE_MAX_PIXELS"))
    max_side: int = field(default=12_000, metadata=env("IMAGE_MAX_SIDE"))
    max_aspect: float = field(default=20.0, metadata=env("IMAGE_MAX_ASPECT"))
    max_resized_pixels: int = field(default=2_000_000, metadata=env("IMAGE_MAX_RESIZED_PIXELS"))
    input_side: int = field(default=DEFAULT_INPUT_SIDE, metadata=env("IMAGE_INPUT_SIDE"))

    def __post_init__(self) -> None:
        values = (
            self.max_bytes,
            self.max_pixels,
            self.max_side,
            self.max_resized_pixels,
            self.input_side,
        )
        if min(values) <= 0 or not self.max_aspect >= 1:
            raise ValueError("image limits must be positive (and max_aspect at least 1)")


@dataclass(frozen=True)
class UrlPolicy:
    """How a URL may be fetched: one budget for the whole fetch (`total_timeout`), the
    connect's, and the longest wait for one read; private addresses only when allowed."""

    allow_private: bool = field(default=False, metadata=env("IMAGE_URL_ALLOW_PRIVATE"))
    connect_timeout: float = field(default=5.0, metadata=env("IMAGE_URL_CONNECT_TIMEOUT"))
    read_timeout: float = field(default=10.0, metadata=env("IMAGE_URL_READ_TIMEOUT"))
    total_timeout: float = field(default=30.0, metadata=env("IMAGE_URL_TOTAL_TIMEOUT"))
    max_redirects: int = 3
    user_agent: str = "visual-product-search-image-fetcher/1"

    def __post_init__(self) -> None:
        if min(self.connect_timeout, self.read_timeout, self.total_timeout) <= 0:
            raise ValueError("URL fetch timeouts must be more than 0 seconds")
