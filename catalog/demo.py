"""A generated demo catalog whose words describe its pictures.

Each product is drawn as its category's silhouette (a t-shirt, a mug, a watch...) in
one named colour, plain or with a tone-on-tone pattern (stripes, checks, dots), on a
backdrop of the same colour a shade lighter or darker. Its title, description,
category and `attributes` say exactly that ("Red striped t-shirt"), so searching the
titles gives sensible answers even offline, and a real CLIP model finds the drawings
by their description. Colour fills most of the frame, so the mean colour of a picture
is nearest its named colour (a test checks every product).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Rgb = tuple[int, int, int]

# Named colours far enough apart that a shaded picture stays nearest its own name.
COLOURS: dict[str, Rgb] = {
    "black": (28, 28, 30),
    "white": (240, 240, 236),
    "grey": (128, 128, 132),
    "red": (200, 30, 35),
    "orange": (235, 120, 25),
    "yellow": (240, 205, 40),
    "green": (40, 140, 60),
    "blue": (35, 85, 200),
    "purple": (120, 50, 160),
    "pink": (235, 130, 170),
    "brown": (120, 75, 40),
    "beige": (215, 195, 150),
}
PATTERNS = ("plain", "striped", "checked", "polka-dot")
# How far (Euclidean RGB) each part is shaded from the product's colour: enough to see,
# little enough that the picture's mean colour stays nearest the colour's name.
BACKDROP_SHADE = 30.0
PATTERN_SHADE = 75.0  # stripes, checks and dots
OUTLINE_SHADE = 130.0  # outlines and details (watch hands, the sole of a sneaker)


@dataclass(frozen=True)
class DemoCategory:
    slug: str
    name: str
    noun: str  # what the silhouette shows
    patterns: tuple[str, ...]  # the patterns that make sense on it
    price_range: tuple[float, float]


CATEGORIES: tuple[DemoCategory, ...] = (
    DemoCategory("shirts", "Shirts", "t-shirt", PATTERNS, (12, 120)),
    DemoCategory("watches", "Watches", "watch", ("plain",), (49, 899)),
    DemoCategory("bags", "Bags", "tote bag", PATTERNS, (25, 450)),
    DemoCategory("shoes", "Shoes", "sneaker", ("plain", "striped"), (35, 300)),
    DemoCategory("lamps", "Lamps", "table lamp", ("plain", "striped", "polka-dot"), (19, 350)),
    DemoCategory("rugs", "Rugs", "rug", PATTERNS, (29, 700)),
    DemoCategory("mugs", "Mugs", "mug", ("plain", "striped", "polka-dot"), (6, 40)),
    DemoCategory("hats", "Hats", "cap", ("plain", "striped", "polka-dot"), (10, 90)),
)
BRANDS = ("Northwind", "Aster", "Kobalt", "Lumen", "Fieldhouse", "Orbit")
DESIGN = 2  # in the image file names: pictures of an older design are never reused


def shade(rgb: Rgb, distance: float) -> Rgb:
    """`rgb` moved `distance` (Euclidean RGB, at most all the way) toward white when it is
    dark, toward black when it is light: a tone of the same colour that stands out."""
    colour = np.asarray(rgb, dtype=np.float64)
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    toward = (np.full(3, 255.0) if luminance < 150 else np.zeros(3)) - colour
    step = toward * min(1.0, distance / max(float(np.linalg.norm(toward)), 1e-9))
    r, g, b = (round(float(c)) for c in colour + step)
    return (r, g, b)


def describe(category: DemoCategory, colour: str, pattern: str, brand: str) -> dict[str, str]:
    """Title and description of what draw_product_image draws."""
    if pattern == "plain":
        title = f"{colour.capitalize()} {category.noun}"
        detail = "in one plain colour"
    else:
        title = f"{colour.capitalize()} {pattern} {category.noun}"
        motif = {"striped": "stripes", "checked": "checks", "polka-dot": "dots"}[pattern]
        detail = f"with tone-on-tone {colour} {motif}"
    return {
        "title": title,
        "description": f"A {colour} {category.noun} {detail}, by {brand}. From the demo catalog.",
    }


# --- drawing -------------------------------------------------------------------------


class Pen:
    """Draws shapes given in unit-square coordinates, placed by a per-picture framing
    (scale, shift, a slight tilt). Boxes and polygons turn with the tilt; ovals keep
    their axes (the tilt is small) and arcs start turned by it."""

    def __init__(self, draw: ImageDraw.ImageDraw, size: int, rng: np.random.Generator) -> None:
        self.draw = draw
        self.size = size
        self.scale = rng.uniform(0.88, 1.0)
        self.shift = rng.uniform(-0.04, 0.04, 2)
        self.tilt = rng.uniform(-0.12, 0.12)
        self.unit = size / 100 * self.scale  # one percent of the frame, scaled

    def at(self, x: float, y: float) -> tuple[float, float]:
        u, v = (x - 0.5) * self.scale, (y - 0.5) * self.scale
        cos, sin = math.cos(self.tilt), math.sin(self.tilt)
        return (
            self.size * (0.5 + self.shift[0] + u * cos - v * sin),
            self.size * (0.5 + self.shift[1] + u * sin + v * cos),
        )

    def poly(self, points: list[tuple[float, float]], fill: object) -> None:
        self.draw.polygon([self.at(x, y) for x, y in points], fill=fill)

    def box(self, x0: float, y0: float, x1: float, y1: float, fill: object) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill)

    def _bounds(self, x0: float, y0: float, x1: float, y1: float) -> list[float]:
        cx, cy = self.at((x0 + x1) / 2, (y0 + y1) / 2)
        rx, ry = (x1 - x0) / 2 * self.scale * self.size, (y1 - y0) / 2 * self.scale * self.size
        return [cx - rx, cy - ry, cx + rx, cy + ry]

    def oval(self, x0: float, y0: float, x1: float, y1: float, **style: object) -> None:
        self.draw.ellipse(self._bounds(x0, y0, x1, y1), **style)

    def arc(self, bounds: tuple[float, float, float, float], start: float, end: float) -> int:
        turn = math.degrees(self.tilt)
        width = max(2, round(self.unit * 5))
        self.draw.arc(self._bounds(*bounds), start + turn, end + turn, fill=255, width=width)
        return width

    def pieslice(self, bounds: tuple[float, float, float, float], start: float, end: float) -> None:
        turn = math.degrees(self.tilt)
        self.draw.pieslice(self._bounds(*bounds), start + turn, end + turn, fill=255)

    def line(self, a: tuple[float, float], b: tuple[float, float], fill: object) -> None:
        self.draw.line([self.at(*a), self.at(*b)], fill=fill, width=max(1, round(self.unit * 2)))


def _shirt(pen: Pen) -> None:
    pen.poly(
        [
            (0.36, 0.16), (0.44, 0.16), (0.47, 0.21), (0.53, 0.21), (0.56, 0.16), (0.64, 0.16),
            (0.88, 0.31), (0.79, 0.44), (0.70, 0.38), (0.70, 0.88), (0.30, 0.88), (0.30, 0.38),
            (0.21, 0.44), (0.12, 0.31),
        ],
        255,
    )  # fmt: skip


def _watch(pen: Pen) -> None:
    pen.box(0.41, 0.04, 0.59, 0.96, 255)  # the strap
    pen.oval(0.25, 0.25, 0.75, 0.75, fill=255)  # the case


def _bag(pen: Pen) -> None:
    pen.poly([(0.22, 0.40), (0.78, 0.40), (0.84, 0.90), (0.16, 0.90)], 255)
    pen.arc((0.33, 0.14, 0.67, 0.66), 180, 360)  # the handle


def _sneaker(pen: Pen) -> None:
    pen.poly(
        [
            (0.08, 0.74), (0.10, 0.52), (0.24, 0.46), (0.40, 0.30), (0.56, 0.30), (0.62, 0.46),
            (0.84, 0.54), (0.94, 0.64), (0.94, 0.74),
        ],
        255,
    )  # fmt: skip


def _lamp(pen: Pen) -> None:
    pen.poly([(0.32, 0.10), (0.68, 0.10), (0.82, 0.46), (0.18, 0.46)], 255)  # the shade
    pen.box(0.46, 0.46, 0.54, 0.82, 255)
    pen.oval(0.28, 0.78, 0.72, 0.92, fill=255)


def _rug(pen: Pen) -> None:
    pen.box(0.14, 0.14, 0.86, 0.86, 255)


def _mug(pen: Pen) -> None:
    pen.box(0.20, 0.22, 0.66, 0.86, 255)
    pen.oval(0.56, 0.34, 0.86, 0.70, outline=255, width=max(2, round(pen.unit * 7)))


def _cap(pen: Pen) -> None:
    pen.pieslice((0.18, 0.22, 0.74, 0.86), 180, 360)  # the crown
    pen.box(0.18, 0.50, 0.74, 0.60, 255)  # the band
    pen.poly([(0.46, 0.50), (0.90, 0.50), (0.94, 0.60), (0.46, 0.60)], 255)  # the peak


SILHOUETTES: dict[str, Callable[[Pen], None]] = {
    "shirts": _shirt,
    "watches": _watch,
    "bags": _bag,
    "shoes": _sneaker,
    "lamps": _lamp,
    "rugs": _rug,
    "mugs": _mug,
    "hats": _cap,
}


def _details(slug: str, pen: Pen, ink: Rgb) -> None:
    """Lines that make the silhouette read as its object."""
    if slug == "watches":
        pen.oval(0.31, 0.31, 0.69, 0.69, outline=ink, width=max(1, round(pen.unit * 2)))
        pen.line((0.5, 0.5), (0.5, 0.36), ink)  # the hands
        pen.line((0.5, 0.5), (0.61, 0.55), ink)
    elif slug == "shoes":
        pen.box(0.08, 0.70, 0.94, 0.74, ink)  # the sole
        for k in range(3):
            x, y = 0.36 + 0.06 * k, 0.36 + 0.03 * k
            pen.line((x, y), (x + 0.08, y + 0.06), ink)  # the laces
    elif slug == "rugs":
        for k in range(12):
            y = 0.17 + k * 0.06
            pen.line((0.08, y), (0.14, y), ink)  # the fringes
            pen.line((0.86, y), (0.92, y), ink)


def _pattern(pattern: str, size: int, colour: Rgb, rng: np.random.Generator) -> Image.Image:
    """A full-frame layer of the pattern in `colour`'s pattern shade."""
    layer = Image.new("RGB", (size, size), colour)
    draw = ImageDraw.Draw(layer)
    ink = shade(colour, PATTERN_SHADE)
    step = int(size / rng.integers(7, 11))
    if pattern == "striped":
        for y in range(0, size, step * 2):
            draw.rectangle([0, y, size, y + step - 1], fill=ink)
    elif pattern == "checked":
        for i, x in enumerate(range(0, size, step)):
            for j, y in enumerate(range(0, size, step)):
                if (i + j) % 2 == 0:
                    draw.rectangle([x, y, x + step - 1, y + step - 1], fill=ink)
    elif pattern == "polka-dot":
        radius = step * 0.28
        for j, y in enumerate(range(step // 2, size, step)):
            for x in range(step // 2 + (step // 2 if j % 2 else 0), size, step):
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=ink)
    return layer


def draw_product_image(
    category: DemoCategory, colour: str, pattern: str, seed: int, size: int = 256
) -> Image.Image:
    """The category's silhouette in `colour` with `pattern`, framed a little differently
    for every seed (position, scale, a slight tilt), with sensor-like noise."""
    rng = np.random.default_rng(seed)
    rgb = COLOURS[colour]
    image = Image.new("RGB", (size, size), shade(rgb, BACKDROP_SHADE))
    mask = Image.new("L", (size, size), 0)
    pen = Pen(ImageDraw.Draw(mask), size, rng)
    SILHOUETTES[category.slug](pen)
    body = _pattern(pattern, size, rgb, rng).rotate(-math.degrees(pen.tilt), fillcolor=rgb)
    image.paste(body, mask=mask)
    outline = shade(rgb, OUTLINE_SHADE)
    edge = np.asarray(mask.filter(ImageFilter.MaxFilter(5))) - np.asarray(mask)
    image.paste(outline, mask=Image.fromarray(edge))
    pen.draw = ImageDraw.Draw(image)
    _details(category.slug, pen, outline)
    noise = rng.normal(0, 5, (size, size, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(0.6))


def demo_rows(n: int, image_dir: Path, seed: int = 7) -> Iterator[dict[str, object]]:
    """Write n products' images under image_dir and yield their import rows (sku-stable)."""
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        colour = names[int(rng.integers(len(names)))]
        pattern = category.patterns[int(rng.integers(len(category.patterns)))]
        brand = BRANDS[int(rng.integers(len(BRANDS)))]
        paths = []
        for v in range(1 + int(rng.integers(0, 2))):
            path = image_dir / f"demo{DESIGN}-{i:05d}-{v}.jpg"
            if not path.exists():
                image = draw_product_image(category, colour, pattern, seed * 100_003 + i * 7 + v)
                image.save(path, quality=88)
            paths.append(str(path))
        low, high = category.price_range
        yield {
            "sku": f"DEMO-{i:05d}",
            **describe(category, colour, pattern, brand),
            "brand": brand,
            "category": category.slug,
            "category_name": category.name,
            "price": round(float(rng.uniform(low, high)), 2),
            "currency": "USD",
            "in_stock": bool(rng.random() > 0.15),
            "attributes": {"colour": colour, "pattern": pattern},
            "images": paths,
        }


def write_jsonl(rows: Iterator[dict[str, object]], path: Path) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
            count += 1
    return count
