"""Fixtures for the encoding tests: one tiny CLIP per session and real image files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from workers.encoding.encoder import ClipEncoder
from workers.encoding.tiny_clip import build_tiny_clip


def image_bytes(fmt: str, size: tuple[int, int] = (48, 32), color: object = (200, 30, 30)) -> bytes:
    """A real image file in `fmt`, made with Pillow."""
    mode = "RGBA" if isinstance(color, tuple) and len(color) == 4 else "RGB"
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, fmt)
    return buf.getvalue()


def gradient_image(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A small RGB picture that differs per seed (so embeddings differ)."""
    width, height = size
    img = Image.new("RGB", size)
    img.putdata(
        [
            ((x * 7 + seed * 31) % 256, (y * 5 + seed * 17) % 256, (x * y + seed * 13) % 256)
            for y in range(height)
            for x in range(width)
        ]
    )
    return img


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny", seed=0)


@pytest.fixture(scope="session")
def encoder(tiny_clip_dir: Path) -> ClipEncoder:
    return ClipEncoder.load(str(tiny_clip_dir), batch_size=4)
