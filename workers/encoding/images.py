"""The one loader for images from outside: uploads, files and URLs.

Every image that reaches the encoder passes through here, so the limits hold
everywhere: a byte cap, and caps on the pixels, the longest side, the aspect ratio
and the size after the model's resize, all checked from the header before
decoding (decompression bombs and 300000x1 strips are refused, never decoded or
resized), four formats, complete files only, EXIF orientation applied, RGB out.
Failures raise one exception type, `ImageRejected`, with a reason code the caller
stores and shows, and a `transient` flag that says whether trying again later can help.

URL fetching (address checks, redirects, streaming) lives in `workers.encoding.urls`.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from workers.config.encoding import ImageLimits, UrlPolicy
from workers.encoding.errors import ImageRejected
from workers.encoding.urls import fetch_url_bytes

__all__ = [
    "ImageHeader",
    "ImageLimits",
    "ImageRejected",
    "LoadedImage",
    "UrlPolicy",
    "check_dimensions",
    "check_image_header",
    "fetch_image_url",
    "load_image_bytes",
    "load_image_file",
]

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")


@dataclass(frozen=True)
class ImageHeader:
    """What the header of an accepted image says, read without decoding it."""

    format: str
    width: int
    height: int


def resized_size(width: int, height: int, input_side: int) -> tuple[int, int]:
    """The size CLIP's processor resizes to: shortest side `input_side`, aspect kept."""
    short, long = min(width, height), max(width, height)
    scaled = -(-long * input_side // short)  # ceil, never smaller than the processor's
    return (input_side, scaled) if width <= height else (scaled, input_side)


def check_dimensions(width: int, height: int, limits: ImageLimits) -> None:
    """Refuse a size whose decode or resize to the model's input would cost too much.

    The reason names the limit and its setting, so a 400 says what was refused.
    """
    if width <= 0 or height <= 0:
        raise ImageRejected("corrupt", f"invalid dimensions {width}x{height}")
    cap = limits.max_pixels
    if Image.MAX_IMAGE_PIXELS:
        cap = min(cap, int(Image.MAX_IMAGE_PIXELS))
    if width * height > cap:
        raise ImageRejected(
            "too_many_pixels",
            f"{width}x{height} = {width * height} pixels, the limit is {cap} (IMAGE_MAX_PIXELS)",
        )
    longest, shortest = max(width, height), min(width, height)
    if longest > limits.max_side:
        raise ImageRejected(
            "side_too_long",
            f"{width}x{height}: the longest side is {longest} pixels, "
            f"the limit is {limits.max_side} (IMAGE_MAX_SIDE)",
        )
    if longest > limits.max_aspect * shortest:
        raise ImageRejected(
            "aspect_too_extreme",
            f"{width}x{height}: the aspect ratio is {longest / shortest:.1f}:1, "
            f"the limit is {limits.max_aspect:g}:1 (IMAGE_MAX_ASPECT)",
        )
    rw, rh = resized_size(width, height, limits.input_side)
    if rw * rh > limits.max_resized_pixels:
        raise ImageRejected(
            "resized_too_large",
            f"{width}x{height} resized to the model's input becomes {rw}x{rh} = {rw * rh} "
            f"pixels, the limit is {limits.max_resized_pixels} (IMAGE_MAX_RESIZED_PIXELS)",
        )


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
    opened = _open_checked(data, limits)
    digest = hashlib.sha256(data).hexdigest()
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


def check_image_header(data: bytes, *, limits: ImageLimits | None = None) -> ImageHeader:
    """Every check `load_image_bytes` makes before decoding, and nothing more: the web
    process refuses a query image this way before any encoder sees it."""
    limits = limits or ImageLimits()
    opened = _open_checked(data, limits)
    try:
        return ImageHeader(format=opened.format or "?", width=opened.width, height=opened.height)
    finally:
        opened.close()


def load_image_file(
    path: str | os.PathLike[str], *, limits: ImageLimits | None = None
) -> LoadedImage:
    """Read and decode a file, refusing an oversized one before reading it."""
    limits = limits or ImageLimits()
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageRejected(
                "too_large", f"{size} bytes, the limit is {limits.max_bytes} (IMAGE_MAX_BYTES)"
            )
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
    """Check the byte count, parse only the header (Image.open is lazy), and enforce the
    size caps on it.

    The pixel cap is also kept at or below Pillow's own MAX_IMAGE_PIXELS, so Pillow's
    DecompressionBombError (raised from the header, above twice that bound) is
    the only bomb signal left to translate.
    """
    if len(data) > limits.max_bytes:
        raise ImageRejected(
            "too_large", f"{len(data)} bytes, the limit is {limits.max_bytes} (IMAGE_MAX_BYTES)"
        )
    if not data:
        raise ImageRejected("corrupt", "empty file")
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
    try:
        check_dimensions(image.width, image.height, limits)
    except ImageRejected:
        image.close()
        raise
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
