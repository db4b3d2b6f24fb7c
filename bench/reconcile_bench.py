"""What one reconcile costs: comparing ids and filter attributes (a 64-bit digest per image
id) against comparing ids alone, measured in the same run on the same rows.

A throwaway SQLite catalog (one product, one image and one 512-d embedding per row, like
`bench/search_db.py`) and a private Redis; one shard in this process holds the same rows.
Each side is timed as reconcile runs it:

- database: the expected rows (`expected_digests`, one joined query read into arrays
  and split by shard; the id-only baseline reads image and product ids the same way);
- replica: what a search worker does when asked (`answer_digest`, the reconcile_digest
  command's body: live rows, hashes, one SET; the baseline: `Shard.ids()` and one SET,
  as the shard_ids task does);
- compare: GET the bytes back and diff them (`compare`; the baseline: two setdiff1d).

The Celery broadcast and the wait for the answers add a round trip that does not grow
with the rows (a few ms) and is left out. Each figure is the best of `--repeat` runs.

    python bench/reconcile_bench.py --quick          # 10k and 100k rows, < 2 minutes
    python bench/reconcile_bench.py --rows 100000,1000000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import types
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workers.redis_process import RedisProcess  # noqa: E402

MODEL = "bench-reconcile"
DIM = 512  # the database's embeddings (CLIP ViT-B/32); the shard's vectors are not read
SHARD_DIM = 8
CHUNK = 5000


def start(scratch: Path) -> RedisProcess:
    """A private Redis and a migrated SQLite database under `scratch`, Django set up on them."""
    redis_server = RedisProcess(scratch / "redis")
    redis_server.start()
    os.environ.update(
        DJANGO_SETTINGS_MODULE="searchsite.settings",
        DATA_DIR=str(scratch),
        DATABASE_URL=f"sqlite:///{scratch / 'db.sqlite3'}",
        REDIS_URL=redis_server.url,
        CELERY_BROKER_URL=redis_server.url,
        CELERY_RESULT_BACKEND=redis_server.url,
        SEARCH_SHARDS="1",
        PROMETHEUS_MULTIPROC_DIR=str(scratch / "prometheus"),
    )
    (scratch / "prometheus").mkdir()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return redis_server


def attrs_of(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Categories (10% none), prices with cents, stock: a function of the id."""
    categories = np.where(ids % 10 == 0, -1, ids % 50 + 1)
    prices = (ids * 7919) % 100_000 / 100
    return categories, prices, ids % 3 != 0


def fill(lo: int, hi: int, shard) -> None:
    """Rows lo+1..hi in the database and in the shard (image id = product id = row)."""
    from django.db import transaction

    from catalog.models import Category, Embedding, IndexState, Product, ProductImage
    from workers.index.types import VectorAttrs

    if lo == 0:
        Category.objects.bulk_create(
            [Category(id=c, name=f"Category {c}", slug=f"c-{c}") for c in range(1, 51)]
        )
    vector = np.zeros(DIM, dtype="<f4").tobytes()
    rng = np.random.default_rng(lo)
    for start in range(lo, hi, CHUNK):
        ids = np.arange(start + 1, min(start + CHUNK, hi) + 1, dtype=np.int64)
        cats, prices, stock = attrs_of(ids)
        with transaction.atomic():
            Product.objects.bulk_create(
                [
                    Product(
                        id=i,
                        sku=f"R-{i}",
                        title=f"Product {i}",
                        category_id=None if c < 0 else c,
                        price=Decimal(f"{p:.2f}"),
                        in_stock=s,
                        index_state=IndexState.INDEXED,
                    )
                    for i, c, p, s in zip(
                        ids.tolist(), cats.tolist(), prices.tolist(), stock.tolist(), strict=True
                    )
                ]
            )
            ProductImage.objects.bulk_create(
                [
                    ProductImage(id=i, product_id=i, source_url=f"https://img.test/{i}.jpg")
                    for i in ids.tolist()
                ]
            )
            Embedding.objects.bulk_create(
                [
                    Embedding(
                        image_id=i,
                        model=MODEL,
                        dim=DIM,
                        vector=vector,
                        source_sha256=hashlib.sha256(str(i).encode()).hexdigest(),
                    )
                    for i in ids.tolist()
                ]
            )
        vectors = rng.standard_normal((len(ids), SHARD_DIM)).astype(np.float32)
        shard.upsert(ids, vectors, VectorAttrs.build(ids, cats, prices, stock))


def ids_only(client, shard) -> dict[str, float]:
    """The id-only comparison, each side as lean as the digest's."""
    from django.conf import settings

    from catalog.models import Embedding
    from workers.index.log import shard_for_product

    t0 = time.perf_counter()
    rows = Embedding.objects.filter(
        model=MODEL, dim=DIM, image__product__is_active=True, image__error=""
    ).values_list("image_id", "image__product_id")
    pairs = np.fromiter(
        (v for row in rows.iterator(chunk_size=50_000) for v in row), dtype=np.int64
    ).reshape(-1, 2)
    products, inverse = np.unique(pairs[:, 1], return_inverse=True)
    shard_of = np.fromiter(  # each shard is compared with its own ids, as reconcile does
        (shard_for_product(p, settings.SEARCH_SHARDS) for p in products.tolist()), np.int64
    )
    want = np.sort(pairs[shard_of[inverse] == 0, 0])
    t1 = time.perf_counter()
    raw = np.ascontiguousarray(shard.ids(), dtype="<i8").tobytes()
    client.set("bench:ids", raw, ex=600)
    t2 = time.perf_counter()
    live = np.frombuffer(client.get("bench:ids"), dtype="<i8").astype(np.int64)
    missing = np.setdiff1d(want, live, assume_unique=True)
    extra = np.setdiff1d(live, want, assume_unique=True)
    t3 = time.perf_counter()
    assert missing.size == extra.size == 0
    return {"db": t1 - t0, "replica": t2 - t1, "compare": t3 - t2, "bytes": len(raw)}


def digests(client, shard) -> dict[str, float]:
    """What `reconcile` does per replica, without the broadcast round trip."""
    from catalog.services.expected_digests import expected_digests
    from workers.index.digest import Digest, compare
    from workers.serving.control import answer_digest

    replica = types.SimpleNamespace(
        shard=shard, shard_no=0, name="bench:1:0", host="bench", ready=True, reason="",
        last_applied="1-0",
    )  # fmt: skip
    t0 = time.perf_counter()
    want = expected_digests(MODEL, DIM)[0]
    t1 = time.perf_counter()
    answer = answer_digest(client, replica, request="b" * 32)
    t2 = time.perf_counter()
    raw = client.get(answer.key)
    diff = compare(want.digest, Digest.from_bytes(raw))
    client.delete(answer.key, f"search:reconcile:{'b' * 32}:answers")
    t3 = time.perf_counter()
    assert diff.clean
    return {"db": t1 - t0, "replica": t2 - t1, "compare": t3 - t2, "bytes": len(raw)}


def best(run: Callable[[], dict[str, float]], repeat: int) -> dict[str, float]:
    runs = [run() for _ in range(repeat)]
    out = {key: min(r[key] for r in runs) for key in ("db", "replica", "compare", "bytes")}
    out["total"] = min(r["db"] + r["replica"] + r["compare"] for r in runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10k and 100k rows (< 2 minutes)")
    parser.add_argument("--rows", default="10000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--every", type=float, default=300.0, help="RECONCILE_EVERY_S to price")
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.quick else sorted(int(n) for n in args.rows.split(","))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as scratch:
        redis_server = start(Path(scratch))
        try:
            from catalog.redis_clients import redis_client
            from workers.index.shard import Shard

            client = redis_client()
            shard = Shard(SHARD_DIM, MODEL, "Flat", work_dir=Path(scratch) / "shard")
            print(
                f"{'rows':>9} {'method':<8} {'db s':>7} {'replica s':>9} {'compare s':>9} "
                f"{'total s':>8} {'Redis bytes':>12} {'x ids s':>7} {'x ids B':>7}"
            )
            done, rows = 0, []
            for n in sizes:
                fill(done, n, shard)
                done = n
                ids_run = best(lambda: ids_only(client, shard), args.repeat)
                digest_run = best(lambda: digests(client, shard), args.repeat)
                for name, r in (("ids", ids_run), ("digest", digest_run)):
                    print(
                        f"{n:>9,} {name:<8} {r['db']:>7.3f} {r['replica']:>9.3f} "
                        f"{r['compare']:>9.3f} {r['total']:>8.3f} {int(r['bytes']):>12,} "
                        f"{r['total'] / ids_run['total']:>7.2f} "
                        f"{r['bytes'] / ids_run['bytes']:>7.2f}",
                        flush=True,
                    )
                rows.append((n, ids_run, digest_run))
        finally:
            redis_server.stop()
    n, ids_run, digest_run = rows[-1]
    per_row_us = 1e6 * digest_run["total"] / n
    print(
        f"SUMMARY {n:,} rows: digest reconcile {digest_run['total']:.2f}s vs ids only "
        f"{ids_run['total']:.2f}s ({digest_run['total'] / ids_run['total']:.2f}x), Redis "
        f"{digest_run['bytes'] / 1e6:.1f} MB vs {ids_run['bytes'] / 1e6:.1f} MB per replica "
        f"({digest_run['bytes'] / ids_run['bytes']:.1f}x); {per_row_us:.1f} us a row, "
        f"{100 * digest_run['total'] / args.every:.2f}% of one core at one run per "
        f"{args.every:.0f}s; {time.perf_counter() - started:.0f}s"
    )


if __name__ == "__main__":
    main()
