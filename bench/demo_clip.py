"""A tiny CLIP fitted to generated demo pictures and their captions, for the benches.

Offline there is no real CLIP, and the tiny random one ranks text queries at random, so
a bench comparing rankings would measure noise. This fits the tiny architecture to a
demo catalog drawn with another seed than the one searched (other pictures, same
kinds of words): like a real CLIP, it has seen pictures described in words, never the
products it is asked about. Captions say what a shopper would (colour, pattern, the
object, its category's name), never the brand or SKU, which no picture shows.

    python -m bench.demo_clip DIR [--steps N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalog.demo import CATEGORIES, demo_rows  # noqa: E402
from workers.encoding.hf_compat import image_processor_class  # noqa: E402
from workers.encoding.tiny_clip import build_tiny_clip  # noqa: E402

NAME = "demo-fitted-tiny-clip"
TRAIN_SEED = 1234  # the searched demo catalog uses demo_rows' default seed
CATEGORY_NAME = {c.slug: c.name.lower() for c in CATEGORIES}


def captions(row: dict) -> list[str]:
    """Ways to describe one demo picture in words."""
    colour, pattern = row["attributes"]["colour"], row["attributes"]["pattern"]
    category = CATEGORY_NAME[str(row["category"])]
    title = str(row["title"]).lower()
    styled = f"{colour} {category}" if pattern == "plain" else f"{colour} {pattern} {category}"
    return [title, styled, f"{colour} {category}", f"a photo of a {title}", category]


def fit(directory: Path, *, n_products: int = 480, steps: int = 300, seed: int = 0) -> Path:
    """Fit and save the model under `directory` (reused when its marker says the same)."""
    directory = Path(directory)
    params = {"name": NAME, "n_products": n_products, "steps": steps, "seed": seed}
    marker = directory / "fitted.json"
    if marker.exists() and json.loads(marker.read_text()).get("params") == params:
        return directory
    from transformers import CLIPModel, CLIPTokenizer

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # a tiny model: more threads only contend on a busy machine
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as scratch:
        base = build_tiny_clip(Path(scratch) / "base", seed=seed)
        model = CLIPModel.from_pretrained(base)
        tokenizer = CLIPTokenizer.from_pretrained(base)
        processor = image_processor_class().from_pretrained(base)
        rows = list(demo_rows(n_products, Path(scratch) / "pictures", seed=TRAIN_SEED))
        pictures, texts = [], []
        for row in rows:
            for path in row["images"]:
                with Image.open(path) as image:
                    pictures.append(image.convert("RGB"))
                texts.append(captions(row))
        pixels = processor(images=pictures, return_tensors="pt")["pixel_values"]
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    batch = min(128, len(texts))
    for _ in range(steps):
        chosen = rng.choice(len(texts), size=batch, replace=False)
        words = [texts[i][int(rng.integers(len(texts[i])))] for i in chosen]
        tokens = tokenizer(words, padding=True, return_tensors="pt")
        loss = model(**tokens, pixel_values=pixels[chosen], return_loss=True).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    model.config.encoder_name = NAME
    model.config.random_weights = False
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    processor.save_pretrained(directory)
    marker.write_text(json.dumps({"params": params, "final_loss": round(loss.item(), 4)}))
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--products", type=int, default=480)
    args = parser.parse_args()
    started = time.perf_counter()
    fit(args.directory, n_products=args.products, steps=args.steps)
    print(f"fitted {NAME} in {time.perf_counter() - started:.0f} s: {args.directory}")


if __name__ == "__main__":
    main()
