"""The one loader for images from outside: uploads, files and URLs.

Every image that reaches the encoder passes through here, so the limits hold
everywhere: a byte cap, a pixel cap checked from the header before decoding
(decompression bombs are refused, never decoded), four formats, complete files
only, EXIF orientation applied, RGB out. Failures raise one exception type,
`ImageRejected`, with a reason code the caller stores and shows, and a
`transient` flag that says whether trying again later can help.

URL fetching (address checks, redirects, streaming) lives in `workers.encoding.urls`.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from workers.encoding.errors import ImageRejected
from workers.encoding.urls import UrlPolicy, fetch_url_bytes

__all__ = [
    "ImageLimits",
    "ImageRejected",
    "LoadedImage",
    "UrlPolicy",
    "fetch_image_url",
    "load_image_bytes",
    "load_image_file",
]

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass(frozen=True)
class ImageLimits:
    """Caps applied to every image; defaults from IMAGE_MAX_BYTES and IMAGE_MAX_PIXELS."""

    max_bytes: int = field(default_factory=lambda: _env_int("IMAGE_MAX_BYTES", DEFAULT_MAX_BYTES))
    max_pixels: int = field(
        default_factory=lambda: _env_int("IMAGE_MAX_PIXELS", DEFAULT_MAX_PIXELS)
    )

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0:
            raise ValueError("image limits must be positive")


@dataclass(frozen=True)
class LoadedImage:
    """A decoded RGB image and the identity of the bytes it came from.

    width and height are those of `image`, after EXIF orientation was applied.
    """

    image: Image.Image
    sha256: str
    width: int
    height: int
    format: str
    n_bytes: int


def load_image_bytes(data: bytes, *, limits: ImageLimits | None = None) -> LoadedImage:
    """Decode `data` into an upright RGB image, or raise ImageRejected."""
    limits = limits or ImageLimits()
    if len(data) > limits.max_bytes:
        raise ImageRejected("too_large", f"{len(data)} bytes, the limit is {limits.max_bytes}")
    if not data:
        raise ImageRejected("corrupt", "empty file")
    digest = hashlib.sha256(data).hexdigest()
    opened = _open_checked(data, limits)
    fmt = opened.format or "?"
    try:
        image = _decode(opened)
    finally:
        opened.close()
    return LoadedImage(
        image=image,
        sha256=digest,
        width=image.width,
        height=image.height,
        format=fmt,
        n_bytes=len(data),
    )


def load_image_file(
    path: str | os.PathLike[str], *, limits: ImageLimits | None = None
) -> LoadedImage:
    """Read and decode a file, refusing an oversized one before reading it."""
    limits = limits or ImageLimits()
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageRejected("too_large", f"{size} bytes, the limit is {limits.max_bytes}")
        with path.open("rb") as fh:
            data = fh.read(limits.max_bytes + 1)
    except FileNotFoundError:
        raise ImageRejected("not_found", f"no such file: {path}") from None
    except IsADirectoryError:
        raise ImageRejected("unreadable", f"not a file: {path}") from None
    except PermissionError as exc:
        raise ImageRejected("unreadable", f"cannot read {path}: {exc.strerror}") from None
    return load_image_bytes(data, limits=limits)


def fetch_image_url(
    url: str, *, limits: ImageLimits | None = None, policy: UrlPolicy | None = None
) -> LoadedImage:
    """Download under `policy` with the byte cap of `limits`, then decode as any other image."""
    limits = limits or ImageLimits()
    data = fetch_url_bytes(url, max_bytes=limits.max_bytes, policy=policy)
    return load_image_bytes(data, limits=limits)


def _open_checked(data: bytes, limits: ImageLimits) -> Image.Image:
    """Parse only the header (Image.open is lazy) and enforce the pixel cap on it.

    The cap is also kept at or below Pillow's own MAX_IMAGE_PIXELS, so Pillow's
    DecompressionBombError (raised from the header, above twice that bound) is
    the only bomb signal left to translate.
    """
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from None
    except UnidentifiedImageError:
        sniffed = _sniff(data)
        if sniffed is None:
            raise ImageRejected(
                "unsupported_format", "not a JPEG, PNG, WebP or GIF image"
            ) from None
        raise ImageRejected("corrupt", f"starts like a {sniffed} but cannot be parsed") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if "truncated" in str(exc).lower() or _riff_cut_short(data):
            raise ImageRejected("truncated", f"the header ends early: {exc}") from None
        raise ImageRejected("corrupt", f"unreadable header: {exc}") from None
    width, height = image.size
    cap = limits.max_pixels
    if Image.MAX_IMAGE_PIXELS:
        cap = min(cap, int(Image.MAX_IMAGE_PIXELS))
    if width <= 0 or height <= 0:
        image.close()
        raise ImageRejected("corrupt", f"invalid dimensions {width}x{height}")
    if width * height > cap:
        image.close()
        raise ImageRejected(
            "too_many_pixels", f"{width}x{height} = {width * height} pixels, the limit is {cap}"
        )
    return image


def _sniff(data: bytes) -> str | None:
    """The allowed format `data` claims to be by its signature, if any."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _riff_cut_short(data: bytes) -> bool:
    """A WebP (RIFF) file shorter than its own header says: Pillow reports only that it
    cannot create a decoder."""
    if data[:4] != b"RIFF" or len(data) < 12:
        return False
    return len(data) < int.from_bytes(data[4:8], "little") + 8


def _decode(image: Image.Image) -> Image.Image:
    """Fully decode the first frame, apply EXIF orientation, convert to RGB.

    A file that ends early fails here: Pillow refuses truncated data unless the
    process-wide ImageFile.LOAD_TRUNCATED_IMAGES was turned on, which we never do.
    """
    fmt = image.format or "?"
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        image.load()
        upright = ImageOps.exif_transpose(image)
        rgb = _to_rgb(upright)
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from None
    except OSError as exc:
        text = str(exc)
        if "truncated" in text or "broken data stream" in text:
            raise ImageRejected("truncated", f"{fmt} data ends early: {text}") from None
        raise ImageRejected("corrupt", f"cannot decode {fmt}: {text}") from None
    except (SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        raise ImageRejected("corrupt", f"cannot decode {fmt}: {exc}") from None
    return rgb


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparent areas over white (product shots with a transparent
    background would otherwise turn black)."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "RGB":
        return image.copy()
    return image.convert("RGB")
