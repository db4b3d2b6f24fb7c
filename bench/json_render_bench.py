"""The API's JSON renderer (catalog/api/renderers.py, orjson) vs DRF's own, on search pages.

Each page is what `GET /api/search/` answers: k results, each a product card (the fields
and types of catalog/api/representation.py: strings, a Decimal-free price string, nested
images, attributes) with its score and image URL. The two renderers alternate in blocks;
the table gives the median microseconds a page and the ratio, from this run.

    python bench/json_render_bench.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "searchsite.settings")


def card(pid: int) -> dict:
    return {
        "id": pid,
        "sku": f"SKU-{pid:08d}",
        "title": f"Leather boot {pid}, waterproof, café brown",
        "description": "Full-grain leather upper, rubber sole. " * 3,
        "brand": "Northwind",
        "category": "footwear",
        "price": f"{pid % 500}.99",
        "currency": "EUR",
        "in_stock": pid % 3 != 0,
        "is_active": True,
        "attributes": {"color": "brown", "size": ["40", "41", "42"], "weight_g": 820},
        "images": [
            {
                "id": pid * 10 + i,
                "url": f"https://shop.test/media/products/{pid}-{i}.jpg",
                "source_url": None,
                "position": i,
                "sha256": "ab" * 32,
                "width": 800,
                "height": 1000,
            }
            for i in range(2)
        ],
        "created_at": "2026-12-06T12:14:04.711704Z",
        "updated_at": "2026-12-06T12:14:04.711708Z",
    }


def page(k: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    ids = rng.choice(1_000_000, k, replace=False)
    return {
        "results": [
            {
                "product": card(int(p)),
                "score": round(float(s), 6),
                "image": f"https://shop.test/media/products/{int(p)}-0.jpg",
            }
            for p, s in zip(ids, np.sort(rng.random(k))[::-1], strict=True)
        ],
        "took_ms": 1.23,
        "partial": False,
        "shards": {"answered": 2, "total": 2, "missing": []},
    }


def per_page_us(render, pages: list[dict], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        for body in pages:
            render(body)
    return (time.perf_counter() - started) / (rounds * len(pages)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer blocks (seconds)")
    parser.add_argument("--blocks", type=int, default=40)
    args = parser.parse_args()
    if args.quick:
        args.blocks = 10
    import django

    django.setup()
    from rest_framework.renderers import JSONRenderer

    from catalog.api.renderers import FastJSONRenderer

    renderers = {
        "DRF JSONRenderer": JSONRenderer().render,
        "FastJSONRenderer": FastJSONRenderer().render,
    }
    print(f"json_render_bench: median of {args.blocks} alternating blocks, us a page")
    print(
        f"{'k':>4} {'bytes':>7} " + " ".join(f"{name:>18}" for name in renderers) + f"{'ratio':>8}"
    )
    ratios = []
    for k in (10, 20, 100):
        pages = [page(k, seed) for seed in range(20)]
        size = len(JSONRenderer().render(pages[0]))
        times: dict[str, list[float]] = {name: [] for name in renderers}
        for block in range(args.blocks):
            order = list(renderers.items()) if block % 2 == 0 else list(renderers.items())[::-1]
            for name, render in order:
                times[name].append(per_page_us(render, pages, 5))
        med = {name: float(np.median(t)) for name, t in times.items()}
        ratio = med["DRF JSONRenderer"] / med["FastJSONRenderer"]
        ratios.append((k, ratio, med))
        print(
            f"{k:>4} {size:>7} " + " ".join(f"{med[n]:18.1f}" for n in renderers) + f"{ratio:7.1f}x"
        )
    k, ratio, med = ratios[0]
    print(f"summary: a page of {k} search results renders in {med['FastJSONRenderer']:.1f} us "
          f"instead of {med['DRF JSONRenderer']:.1f} ({ratio:.1f}x faster); "
          f"at k=100 {ratios[-1][1]:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
