"""The image loader on real files made with Pillow, and on hostile ones."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from workers.encoding.images import (
    ImageLimits,
    ImageRejected,
    LoadedImage,
    load_image_bytes,
    load_image_file,
)

from .conftest import gradient_image, image_bytes

RED = (200, 30, 30)


def _close(pixel: tuple[int, ...], expected: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel, expected, strict=True))


def _rejected(data: bytes, limits: ImageLimits | None = None) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        load_image_bytes(data, limits=limits or ImageLimits())
    return info.value


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels but whose data is a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_allowed_formats_load_as_rgb(fmt: str) -> None:
    data = image_bytes(fmt, (48, 32), RED)
    loaded = load_image_bytes(data, limits=ImageLimits())
    assert isinstance(loaded, LoadedImage)
    assert loaded.format == fmt
    assert loaded.image.mode == "RGB"
    assert (loaded.width, loaded.height) == loaded.image.size == (48, 32)
    assert loaded.sha256 == hashlib.sha256(data).hexdigest()
    assert loaded.n_bytes == len(data)
    assert _close(loaded.image.getpixel((10, 10)), RED, tol=40)  # GIF palettes and JPEG are lossy


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "ICO", "PPM"])
def test_other_image_formats_are_refused(fmt: str) -> None:
    error = _rejected(image_bytes(fmt, (16, 16)))
    assert error.reason_code == "unsupported_format"
    assert error.transient is False


def test_first_frame_of_an_animated_gif() -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    loaded = load_image_bytes(buf.getvalue())
    assert loaded.format == "GIF"
    assert _close(loaded.image.getpixel((5, 5)), (255, 0, 0))


def test_exif_orientation_is_applied() -> None:
    """Stored 40x20 with red on the left and Orientation=6 (display rotated 90 degrees
    clockwise): the loaded image is 20x40 with red on top."""
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    loaded = load_image_bytes(buf.getvalue())
    assert (loaded.width, loaded.height) == (20, 40)
    assert _close(loaded.image.getpixel((10, 5)), (255, 0, 0), tol=30)
    assert _close(loaded.image.getpixel((10, 35)), (0, 0, 255), tol=30)


@pytest.mark.parametrize(
    ("mode", "color"),
    [("L", 128), ("P", 3), ("CMYK", (0, 255, 255, 0)), ("LA", (90, 255)), ("I;16", 1000)],
)
def test_other_modes_become_rgb(mode: str, color: object) -> None:
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    buf = io.BytesIO()
    Image.new(mode, (8, 8), color).save(buf, fmt)
    loaded = load_image_bytes(buf.getvalue())
    assert loaded.image.mode == "RGB"
    assert loaded.image.size == (8, 8)


def test_transparent_areas_become_white() -> None:
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    img.paste((0, 128, 0, 255), (0, 0, 5, 10))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    loaded = load_image_bytes(buf.getvalue())
    assert loaded.image.getpixel((8, 5)) == (255, 255, 255)
    assert loaded.image.getpixel((2, 5)) == (0, 128, 0)


def test_decompression_bomb_is_refused_from_the_header() -> None:
    bomb = png_claiming(100_000, 100_000)
    assert len(bomb) < 200
    error = _rejected(bomb)
    assert error.reason_code == "too_many_pixels"
    assert error.transient is False


def test_pixel_cap_below_pillows_own_bound() -> None:
    # 8000 x 6000 = 48 M pixels: under Pillow's bomb bound, over our default 40 M
    assert _rejected(png_claiming(8000, 6000)).reason_code == "too_many_pixels"
    error = _rejected(image_bytes("PNG", (100, 100)), ImageLimits(max_pixels=9_999))
    assert error.reason_code == "too_many_pixels"
    assert "100x100" in error.message
    assert load_image_bytes(image_bytes("PNG", (100, 100)), limits=ImageLimits(max_pixels=10_000))


def test_truncated_files_are_refused() -> None:
    buf = io.BytesIO()
    gradient_image(1, (64, 64)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    for cut in (len(jpeg) // 2, len(jpeg) - 40):
        assert _rejected(jpeg[:cut]).reason_code == "truncated"
    buf = io.BytesIO()
    gradient_image(2, (64, 64)).save(buf, "WEBP")
    assert _rejected(buf.getvalue()[:-50]).reason_code == "truncated"
    buf = io.BytesIO()
    gradient_image(2, (64, 64)).save(buf, "PNG")
    assert _rejected(buf.getvalue()[:300]).reason_code == "truncated"


def test_garbage_after_a_valid_signature_is_corrupt() -> None:
    assert _rejected(b"\xff\xd8\xff" + b"\x00" * 40).reason_code == "corrupt"
    assert _rejected(b"GIF89a" + b"\x01" * 3).reason_code == "corrupt"
    assert _rejected(b"").reason_code == "corrupt"


def test_oversized_bytes_are_refused() -> None:
    data = image_bytes("PNG", (64, 64))
    error = _rejected(data, ImageLimits(max_bytes=len(data) - 1))
    assert (error.reason_code, error.transient) == ("too_large", False)
    assert load_image_bytes(data, limits=ImageLimits(max_bytes=len(data)))


def test_limits_have_working_defaults_and_refuse_nonsense() -> None:
    assert ImageLimits() == ImageLimits(max_bytes=20 * 1024 * 1024, max_pixels=40_000_000)
    with pytest.raises(ValueError, match="positive"):
        ImageLimits(max_bytes=0)


def test_files(tmp_path: Path) -> None:
    good = tmp_path / "shoe.webp"
    good.write_bytes(image_bytes("WEBP", (30, 20)))
    loaded = load_image_file(good)
    assert (loaded.format, loaded.width, loaded.height) == ("WEBP", 30, 20)

    text = tmp_path / "photo.jpg"
    text.write_text("this is not a picture, whatever its name says\n")
    with pytest.raises(ImageRejected) as info:
        load_image_file(text)
    assert info.value.reason_code == "unsupported_format"

    big = tmp_path / "big.png"
    big.write_bytes(image_bytes("PNG", (64, 64)))
    with pytest.raises(ImageRejected) as info:
        load_image_file(big, limits=ImageLimits(max_bytes=100))
    assert info.value.reason_code == "too_large"

    for missing, code in ((tmp_path / "nope.png", "not_found"), (tmp_path, "unreadable")):
        with pytest.raises(ImageRejected) as info:
            load_image_file(missing)
        assert info.value.reason_code == code


def test_rejection_carries_its_fields() -> None:
    error = ImageRejected("timeout", "no answer in 10 s", True)
    assert (error.reason_code, error.message, error.transient) == (
        "timeout",
        "no answer in 10 s",
        True,
    )
    assert str(error) == "timeout: no answer in 10 s"
    assert ImageRejected("corrupt", "x").transient is False
