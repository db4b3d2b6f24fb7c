"""A generated demo catalog whose images differ by category in shape, colour and pattern.

Image search needs something to find even with a randomly initialised model:
products of one category share a motif, so their images sit close together.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


@dataclass(frozen=True)
class DemoCategory:
    slug: str
    name: str
    motif: str
    hues: tuple[tuple[int, int, int], ...]
    nouns: tuple[str, ...]
    price_range: tuple[float, float]


CATEGORIES: tuple[DemoCategory, ...] = (
    DemoCategory(
        "watches",
        "Watches",
        "circle",
        ((30, 30, 30), (190, 160, 60), (200, 200, 210)),
        ("watch", "chronograph", "diver watch"),
        (49, 899),
    ),
    DemoCategory(
        "bags",
        "Bags",
        "square",
        ((120, 70, 30), (20, 20, 20), (150, 20, 40)),
        ("tote", "backpack", "handbag"),
        (25, 450),
    ),
    DemoCategory(
        "shoes",
        "Shoes",
        "triangle",
        ((200, 30, 30), (240, 240, 240), (30, 60, 160)),
        ("sneaker", "ankle boot", "loafer"),
        (35, 300),
    ),
    DemoCategory(
        "shirts",
        "Shirts",
        "stripes",
        ((30, 90, 200), (250, 250, 250), (40, 140, 60)),
        ("oxford shirt", "t-shirt", "polo"),
        (12, 120),
    ),
    DemoCategory(
        "lamps",
        "Lamps",
        "star",
        ((250, 200, 40), (250, 140, 20), (240, 240, 200)),
        ("desk lamp", "floor lamp", "pendant light"),
        (19, 350),
    ),
    DemoCategory(
        "rugs",
        "Rugs",
        "checker",
        ((150, 30, 30), (200, 170, 120), (40, 40, 90)),
        ("rug", "runner", "doormat"),
        (29, 700),
    ),
    DemoCategory(
        "mugs",
        "Mugs",
        "rings",
        ((250, 250, 250), (60, 160, 170), (230, 120, 150)),
        ("mug", "cup", "travel mug"),
        (6, 40),
    ),
    DemoCategory(
        "hats",
        "Hats",
        "diamond",
        ((110, 80, 50), (20, 100, 40), (200, 60, 140)),
        ("cap", "beanie", "fedora"),
        (10, 90),
    ),
)
ADJECTIVES = ("classic", "modern", "vintage", "minimal", "bold", "soft", "sport", "premium")
BRANDS = ("Northwind", "Aster", "Kobalt", "Lumen", "Fieldhouse", "Orbit")
COLOUR_NAMES = (
    "black",
    "gold",
    "silver",
    "brown",
    "red",
    "white",
    "blue",
    "green",
    "yellow",
    "orange",
    "cream",
    "navy",
    "teal",
    "pink",
    "olive",
    "magenta",
)


def _colour_name(rgb: tuple[int, int, int]) -> str:
    return COLOUR_NAMES[int(sum(rgb)) % len(COLOUR_NAMES)]


def _jitter(
    rgb: tuple[int, int, int], rng: np.random.Generator, amount: int = 25
) -> tuple[int, int, int]:
    values = np.clip(np.asarray(rgb) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return (int(values[0]), int(values[1]), int(values[2]))


def _polygon(
    cx: float, cy: float, radius: float, points: int, rotation: float, inner: float = 1.0
) -> list:
    coords = []
    for i in range(points * (2 if inner != 1.0 else 1)):
        r = radius if inner == 1.0 or i % 2 == 0 else radius * inner
        angle = rotation + i * math.pi / (points if inner != 1.0 else points / 2)
        coords.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return coords


def draw_product_image(category: DemoCategory, seed: int, size: int = 256) -> Image.Image:
    """One product photo: the category's motif, in one of its colours, with per-item variation."""
    rng = np.random.default_rng(seed)
    colour = _jitter(category.hues[int(rng.integers(len(category.hues)))], rng)
    background = _jitter((235, 235, 232), rng, 12)
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    c = size / 2 + rng.uniform(-size * 0.06, size * 0.06, 2)
    r = size * rng.uniform(0.28, 0.38)
    rot = rng.uniform(0, math.pi)
    motif = category.motif
    if motif == "circle":
        draw.ellipse(
            [c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=colour, outline=(20, 20, 20), width=6
        )
    elif motif == "square":
        draw.polygon(_polygon(c[0], c[1], r * 1.2, 4, rot / 6 + math.pi / 4), fill=colour)
    elif motif == "triangle":
        draw.polygon(_polygon(c[0], c[1], r * 1.2, 3, rot / 6 - math.pi / 2), fill=colour)
    elif motif == "stripes":
        step = int(size / rng.integers(6, 10))
        for x in range(0, size, step * 2):
            draw.rectangle([x, 0, x + step, size], fill=colour)
    elif motif == "star":
        draw.polygon(_polygon(c[0], c[1], r * 1.2, 5, rot, inner=0.45), fill=colour)
    elif motif == "checker":
        step = int(size / rng.integers(4, 7))
        for i, x in enumerate(range(0, size, step)):
            for j, y in enumerate(range(0, size, step)):
                if (i + j) % 2 == 0:
                    draw.rectangle([x, y, x + step, y + step], fill=colour)
    elif motif == "rings":
        for k in range(4, 0, -1):
            rr = r * k / 4
            fill = colour if k % 2 == 0 else background
            draw.ellipse([c[0] - rr, c[1] - rr, c[0] + rr, c[1] + rr], fill=fill)
    elif motif == "diamond":
        draw.polygon(_polygon(c[0], c[1], r * 1.3, 4, 0), fill=colour)
    noise = rng.normal(0, 6, (size, size, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(0.6))


def demo_rows(n: int, image_dir: Path, seed: int = 7) -> Iterator[dict[str, object]]:
    """Write n products' images under image_dir and yield their import rows (sku-stable)."""
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        paths = []
        for v in range(1 + int(rng.integers(0, 2))):
            path = image_dir / f"demo-{i:05d}-{v}.jpg"
            if not path.exists():
                draw_product_image(category, seed * 100_003 + i * 7 + v).save(path, quality=88)
            paths.append(str(path))
        noun = category.nouns[int(rng.integers(len(category.nouns)))]
        adjective = ADJECTIVES[int(rng.integers(len(ADJECTIVES)))]
        colour = _colour_name(category.hues[i % len(category.hues)])
        low, high = category.price_range
        yield {
            "sku": f"DEMO-{i:05d}",
            "title": f"{adjective.title()} {colour} {noun}",
            "description": f"A {adjective} {colour} {noun} from the demo catalog.",
            "brand": BRANDS[int(rng.integers(len(BRANDS)))],
            "category": category.slug,
            "category_name": category.name,
            "price": round(float(rng.uniform(low, high)), 2),
            "currency": "USD",
            "in_stock": bool(rng.random() > 0.15),
            "images": paths,
        }


def write_jsonl(rows: Iterator[dict[str, object]], path: Path) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
            count += 1
    return count
