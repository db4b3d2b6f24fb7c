"""The demo catalog's words describe its pictures: colour, pattern, object and category."""

from __future__ import annotations

import io
import itertools
import json

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image

from catalog.demo import CATEGORIES, COLOURS, PATTERNS, demo_rows, draw_product_image
from catalog.models import Product

BY_SLUG = {category.slug: category for category in CATEGORIES}


def nearest_named_colour(image: Image.Image) -> str:
    """The name in the demo's palette nearest the picture's mean RGB."""
    mean = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)
    return min(COLOURS, key=lambda name: float(np.linalg.norm(np.asarray(COLOURS[name]) - mean)))


def test_every_product_is_titled_with_the_colour_its_pictures_show(tmp_path):
    rows = list(demo_rows(120, tmp_path))
    assert {row["attributes"]["colour"] for row in rows} == set(COLOURS)
    for row in rows:
        colour, pattern = row["attributes"]["colour"], row["attributes"]["pattern"]
        assert row["title"].split()[0].lower() == colour, row
        for path in row["images"]:
            with Image.open(path) as picture:  # as saved: JPEG, noise and all
                assert nearest_named_colour(picture) == colour, (row["title"], path)
        category = BY_SLUG[row["category"]]
        words = [colour.capitalize(), *([] if pattern == "plain" else [pattern]), category.noun]
        assert row["title"] == " ".join(words)
        assert pattern in category.patterns
        assert f"{colour} {category.noun}" in row["description"]


@pytest.mark.parametrize("category", CATEGORIES, ids=lambda c: c.slug)
def test_every_colour_and_pattern_of_a_category_reads_as_its_colour(category):
    """Every combination the generator can draw, not only the ones a seed happens to pick."""
    for n, (colour, pattern) in enumerate(itertools.product(COLOURS, category.patterns)):
        picture = draw_product_image(category, colour, pattern, seed=n)
        assert nearest_named_colour(picture) == colour, (category.slug, colour, pattern)


def test_a_pattern_is_drawn_where_the_title_names_one():
    """The same seed frames the same picture with the same noise: a patterned one differs
    from the plain one over a good part of the frame (the stripes, checks or dots)."""
    for category in CATEGORIES:
        for colour in ("red", "white", "black", "beige"):
            plain = np.asarray(draw_product_image(category, colour, "plain", seed=3), float)
            for pattern in set(category.patterns) - {"plain"}:
                drawn = np.asarray(draw_product_image(category, colour, pattern, seed=3), float)
                changed = (np.abs(drawn - plain).mean(axis=2) > 20).mean()
                assert changed > 0.03, (category.slug, colour, pattern, changed)
    assert set(PATTERNS) == {p for c in CATEGORIES for p in c.patterns}


@pytest.mark.django_db(transaction=True)
def test_the_import_keeps_colour_and_pattern_as_attributes(tmp_path, settings):
    settings.IMPORT_ROOT = tmp_path / "import"
    settings.MEDIA_ROOT = tmp_path / "media"
    call_command("make_demo_catalog", "--n", "8", stdout=io.StringIO(), verbosity=0)
    rows = [json.loads(line) for line in (tmp_path / "import/demo/catalog.jsonl").open()]
    for row in rows:
        product = Product.objects.get(sku=row["sku"])
        assert product.title == row["title"]
        assert product.attributes == row["attributes"]
        assert product.category.slug == row["category"]
