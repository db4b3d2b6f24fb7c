"""The synthetic catalog of search_bench: ids, shard split, attributes, built shard artifacts.

Vector row r is product r + 1 with one image, image id = product id = vector id, so the
shards, the update log and the database all agree. Rows are generated block by block from
the index engine's clustered generator (reproducible per block), so every process can
regenerate any part of the catalog without holding 1M vectors. Django-free.

    python bench/search_data.py build --shard 0 --shards 2 --n 1000000 --index-dir D ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.index.log import START, shard_for_product
from workers.index.synthetic import ClusterModel
from workers.index.types import VectorAttrs

MODEL = "bench-synthetic-512"
DIM = 512
CLUSTERS = 1000
BLOCK = 100_000
CATEGORIES = 20  # database category ids 1..CATEGORIES


def layout() -> ClusterModel:
    return ClusterModel.make(DIM, CLUSTERS, seed=1234)


def product_ids(n: int) -> np.ndarray:
    """Product id of every vector row: 1..n (int64)."""
    return np.arange(1, n + 1, dtype=np.int64)


def shard_of(ids: np.ndarray, n_shards: int) -> np.ndarray:
    """The production shard function, applied to many ids (int16)."""
    return np.fromiter(
        (shard_for_product(int(i), n_shards) for i in ids), dtype=np.int16, count=len(ids)
    )


def attrs_for(ids: np.ndarray) -> VectorAttrs:
    """Category, price and stock per product, derived from the id (the DB uses the same)."""
    ids = np.asarray(ids, dtype=np.int64)
    return VectorAttrs.build(ids, ids % CATEGORIES + 1, ids % 500 + 0.99, ids % 4 != 0)


def blocks(n: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(product ids, vectors) of the whole catalog, block by block."""
    model = layout()
    ids = product_ids(n)
    for b, start in enumerate(range(0, n, BLOCK)):
        rows = min(BLOCK, n - start)
        yield ids[start : start + rows], model.sample(rows, np.random.default_rng(10_000 + b))


def fresh_vectors(n: int, seed: int) -> np.ndarray:
    """Vectors from the same clusters that are not in the catalog (queries, new upserts)."""
    return layout().sample(n, np.random.default_rng(seed))


def query_products(n: int, count: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """`count` catalog products (ids, stored vectors) to ask "more like this" about.

    Taken from the first block only (rows are shuffled over the clusters anyway), so
    finding their vectors costs one block, not the catalog.
    """
    ids, vectors = next(blocks(n))
    pick = np.sort(
        np.random.default_rng(seed).choice(len(ids), min(count, len(ids)), replace=False)
    )
    return ids[pick], np.ascontiguousarray(vectors[pick])


def store_url(index_dir: Path) -> str:
    """The bench's artifact store: a file:// folder beside the replicas' working folders."""
    return (Path(index_dir).resolve() / "store").as_uri()


def build_shard(shard: int, n_shards: int, n: int, spec: str, index_dir: Path) -> dict:
    """Build shard `shard` of the catalog and publish it to the store replicas load from."""
    from workers.index.artifacts import ArtifactStore
    from workers.index.bulk_build import build_bulk
    from workers.index.threads import use_search_threads

    use_search_threads(1)
    started = time.perf_counter()

    def batches():
        for ids, vectors in blocks(n):
            mine = shard_of(ids, n_shards) == shard
            ids, vectors = ids[mine], vectors[mine]
            for lo in range(0, len(ids), 50_000):
                part = ids[lo : lo + 50_000]
                yield part, vectors[lo : lo + 50_000], attrs_for(part)

    expected = int(np.count_nonzero(shard_of(product_ids(n), n_shards) == shard))
    directory = Path(index_dir) / "builds" / f"shard-{shard}"
    built = build_bulk(
        batches(),
        DIM,
        MODEL,
        spec,
        expected_count=expected,
        work_dir=directory / "work",
        train_threads=1,
        add_threads=1,
        n_shards=n_shards,
    )
    folder = built.shard.snapshot(directory / "out", START)
    ArtifactStore(store_url(index_dir)).publish(
        shard, folder, kind="build", build_id="bench", log_position=START, meta={}
    )
    return {
        "shard": shard,
        "vectors": built.n_vectors,
        "spec": built.spec.factory,
        "params": {k: v for k, v in built.shard.params.to_dict().items() if v is not None},
        "tune_recall": built.tune.get("recall_at_k"),
        "train_s": round(built.train_seconds, 1),
        "add_s": round(built.add_seconds, 1),
        "total_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="build one shard of the bench catalog")
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--shard", type=int, required=True)
    parser.add_argument("--shards", type=int, required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--spec", default="ivf")
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="where to write the facts (json)")
    args = parser.parse_args()
    facts = build_shard(args.shard, args.shards, args.n, args.spec, args.index_dir)
    args.out.write_text(json.dumps(facts))


if __name__ == "__main__":
    main()
