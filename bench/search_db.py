"""Fill a throwaway catalog database with the bench's synthetic products (Django script).

Every vector of the shards gets its Product and ProductImage row (ids as in
bench/search_data.py), so the web joins real rows for every hit; only the products
used as "more like this" queries get an Embedding row (what `similar` reads).
Run with DJANGO_SETTINGS_MODULE=searchsite.settings and the bench's DATABASE_URL,
after `manage.py migrate`:

    python bench/search_db.py --n 1000000 --embeddings chosen.npz
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from decimal import Decimal
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402

from bench.search_data import CATEGORIES, MODEL, attrs_for, product_ids  # noqa: E402
from catalog.models import Category, Embedding, IndexState, Product, ProductImage  # noqa: E402

CHUNK = 5000


def fill(n: int, emb_ids: np.ndarray, emb_vectors: np.ndarray, model: str = MODEL) -> None:
    Category.objects.bulk_create(
        [Category(id=c, name=f"Category {c}", slug=f"cat-{c}") for c in range(1, CATEGORIES + 1)]
    )
    ids = product_ids(n)
    for lo in range(0, n, CHUNK):
        part = ids[lo : lo + CHUNK]
        attrs = attrs_for(part)
        with transaction.atomic():
            Product.objects.bulk_create(
                [
                    Product(
                        id=int(pid),
                        sku=f"SYN-{pid:08d}",
                        title=f"Synthetic product {pid}",
                        category_id=int(cat),
                        price=Decimal(f"{price:.2f}"),
                        in_stock=bool(stock),
                        index_state=IndexState.INDEXED,
                    )
                    for pid, cat, price, stock in zip(
                        part, attrs.category_ids, attrs.prices, attrs.in_stock, strict=True
                    )
                ]
            )
            ProductImage.objects.bulk_create(
                [
                    ProductImage(
                        id=int(pid), product_id=int(pid), source_url=f"https://img.test/{pid}.jpg"
                    )
                    for pid in part
                ]
            )
    for lo in range(0, len(emb_ids), CHUNK):
        with transaction.atomic():
            Embedding.objects.bulk_create(
                [
                    Embedding(
                        image_id=int(pid),
                        model=model,
                        dim=vec.shape[0],
                        vector=np.ascontiguousarray(vec, dtype="<f4").tobytes(),
                        source_sha256=hashlib.sha256(str(pid).encode()).hexdigest(),
                    )
                    for pid, vec in zip(
                        emb_ids[lo : lo + CHUNK], emb_vectors[lo : lo + CHUNK], strict=True
                    )
                ]
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--embeddings", type=Path, required=True, help=".npz with ids, vectors")
    parser.add_argument("--model", default=MODEL, help="the embeddings' model name")
    args = parser.parse_args()
    started = time.perf_counter()
    with np.load(args.embeddings, allow_pickle=False) as data:
        fill(args.n, data["ids"], data["vectors"], args.model)
    if connection.vendor == "postgresql":  # as autovacuum soon would after a bulk load:
        with connection.cursor() as cursor:  # statistics, and GIN's pending list merged
            cursor.execute("VACUUM ANALYZE")
    print(
        f"database: {args.n} products, images; embeddings for queries "
        f"in {time.perf_counter() - started:.0f}s"
    )


if __name__ == "__main__":
    main()
