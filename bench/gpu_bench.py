"""GPU against CPU: batched searches of a shard whose bulk faiss also holds on a GPU.

The same shard state searched through its GPU backend and through the CPU backend under
it, batch by batch, interleaved: queries a second and recall@10 against exact neighbours,
for an exact IVF and a compressed one (OPQ+IVF+PQ, re-ranked from bfloat16 rows). Needs
a GPU and faiss-gpu (see `bench/gpu_check.sh`).

    python bench/gpu_bench.py --quick        # 200k x 128
    python bench/gpu_bench.py                # 1M x 512
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.index.backends.gpu import GpuBackend, gpu_count
from workers.index.columns import Columns
from workers.index.faiss_calls import new_index
from workers.index.gpu import train_index
from workers.index.rerank import RerankStore
from workers.index.shard import Shard
from workers.index.spec import IndexSpec, SearchParams
from workers.index.synthetic import ClusterModel
from workers.index.types import VectorAttrs

K = 10


def built_shard(spec: IndexSpec, x: np.ndarray, work: Path) -> Shard:
    """A shard holding `x` (ids 0..n-1), trained on a sample (on the GPU: `train_index`)."""
    n, dim = x.shape
    index = new_index(spec, dim)
    train_index(index, x[: min(n, 64 * (spec.nlist or 1), 100_000)], n_threads=16)
    with_ids = np.arange(n, dtype=np.int64)
    faiss.omp_set_num_threads(16)
    for lo in range(0, n, 100_000):
        index.add_with_ids(x[lo : lo + 100_000], with_ids[lo : lo + 100_000])
    cols = Columns()
    cols.append(with_ids, VectorAttrs.build(with_ids, with_ids % 100, np.ones(n), np.ones(n)))
    rerank = RerankStore.written(work, dim, [x]) if spec.rerank else None
    shard = Shard(dim, "bench", spec, work_dir=work)
    shard.install(index, cols, rerank)
    return shard


def timed(
    shard: Shard, queries: np.ndarray, batch: int, params: SearchParams
) -> tuple[float, np.ndarray]:
    found = np.empty((len(queries), K), dtype=np.int64)
    start = time.perf_counter()
    for lo in range(0, len(queries), batch):
        found[lo : lo + batch] = shard.search(queries[lo : lo + batch], K, params=params).image_ids
    return len(queries) / (time.perf_counter() - start), found


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    if args.quick:
        args.n, args.dim = 200_000, 128
    if gpu_count() == 0:
        sys.exit(
            "no GPU: faiss.get_num_gpus() is 0 (install faiss-gpu-cu12, see bench/gpu_check.sh)"
        )
    started = time.perf_counter()
    layout = ClusterModel.make(args.dim, 1000, seed=3)
    x = np.vstack(
        [layout.sample(100_000, np.random.default_rng(s)) for s in range(args.n // 100_000)]
    )
    queries = layout.sample(args.queries, np.random.default_rng(99))
    faiss.omp_set_num_threads(16)
    truth = faiss.knn(queries, x, K, metric=faiss.METRIC_INNER_PRODUCT)[1]
    nlist = 4096 if args.n >= 1_000_000 else 1024
    m = args.dim // 16
    specs = [
        (IndexSpec(f"IVF{nlist},Flat"), SearchParams(nprobe=32)),
        (IndexSpec(f"OPQ{m},IVF{nlist},PQ{m}", rerank=True), SearchParams(nprobe=32, rerank_k=200)),
    ]
    print(f"# {args.n:,} x {args.dim}, {args.queries} queries in batches of {args.batch}, k={K}")
    print(f"{'index':<28}{'device':>7}{'q/s':>10}{'recall@10':>11}{'x cpu':>7}")
    ratios = []
    for spec, params in specs:
        with tempfile.TemporaryDirectory() as work:
            shard = built_shard(spec, x, Path(work))
            gpu_state = shard.state
            if not isinstance(gpu_state.backend, GpuBackend):
                print(f"{spec.factory:<28} no GPU copy made (see the log)")
                continue
            cpu_state = replace(gpu_state, backend=gpu_state.backend.cpu)
            best = {"gpu": 0.0, "cpu": 0.0}
            found = {}
            for _ in range(3):  # interleaved, best of 3
                for device, state in (("gpu", gpu_state), ("cpu", cpu_state)):
                    shard.state = state
                    qps, found[device] = timed(shard, queries, args.batch, params)
                    best[device] = max(best[device], qps)
            for device in ("gpu", "cpu"):
                ratio = best[device] / best["cpu"]
                print(
                    f"{spec.factory:<28}{device:>7}{best[device]:10.0f}"
                    f"{recall(found[device], truth):11.3f}{ratio:7.2f}"
                )
            ratios.append(f"{spec.factory} x{best['gpu'] / best['cpu']:.1f}")
    print(
        f"SUMMARY {args.n:,} x {args.dim}: GPU/CPU batch QPS {', '.join(ratios)}; "
        f"{time.perf_counter() - started:.0f}s"
    )


if __name__ == "__main__":
    main()
