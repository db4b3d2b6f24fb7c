"""Bulk builds: stream stored vectors into a trained index without holding them all.

Only the training sample (a few hundred thousand vectors at most) is held as float32;
the rest is added batch by batch, written to the 16-bit re-rank file for compressed
specs, and folded into a running exact top-k of the held-out tuning queries. The build
records the update-log position it covers, so a replica can swap to it and replay the
log from there without losing an update that arrived meanwhile.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from workers.index.columns import Columns
from workers.index.faiss_calls import new_index
from workers.index.gpu import train_index
from workers.index.ivf_lists import repack_ivf
from workers.index.log import START
from workers.index.rerank import RowWriter
from workers.index.shard import Shard
from workers.index.spec import IndexSpec, choose_spec
from workers.index.synthetic import normalise
from workers.index.threads import TRAIN_THREADS, threads
from workers.index.tune import DEPTHS, autotune
from workers.index.types import VectorAttrs

logger = logging.getLogger(__name__)

Batch = tuple[np.ndarray, np.ndarray, VectorAttrs]


@dataclass
class BuiltIndex:
    """A built, tuned shard plus what the build covered and measured."""

    shard: Shard
    spec: IndexSpec
    log_position: str
    n_vectors: int
    train_seconds: float
    add_seconds: float
    tune_seconds: float
    device: str
    tune: dict[str, object] = field(default_factory=dict)


def default_train_size(spec: IndexSpec) -> int:
    """Enough points for the coarse k-means (~64 per list) and PQ codebooks, capped at 512k:
    the sample is held as float32 and each k-means iteration assigns all of it."""
    need = 0
    if spec.nlist:
        need = 64 * spec.nlist
    if spec.rerank:
        need = max(need, 65_536)
    return min(need, 524_288)


def build_bulk(
    batches: Iterable[Batch],
    dim: int,
    model: str,
    spec: IndexSpec | str = "auto",
    *,
    expected_count: int | None = None,
    log_position: str = START,
    work_dir: Path | None = None,
    train_size: int | None = None,
    recall_target: float = 0.95,
    k: int = 10,
    n_shards: int = 1,
    tune_queries: int = 500,
    seed: int = 0,
    train_threads: int = TRAIN_THREADS,
    add_threads: int = TRAIN_THREADS,
    opq_iterations: int = 10,
) -> BuiltIndex:
    """Build and tune one shard's bulk index from a stream of (ids, vectors, attrs) batches.

    `log_position` is the update-log id the source reflects (read it before reading the
    source, and register it so the log is not trimmed past it while building).
    `n_shards`: how many shards the catalog is placed over (`log.shard_for_product`), so
    the tuner aims at the recall of their merged answer (`tune.recall`); 1 for a shard
    searched alone.
    """
    if isinstance(spec, str):
        if spec.strip().lower() == "auto" and expected_count is None:
            raise ValueError("spec 'auto' needs expected_count")
        spec = choose_spec(expected_count or 0, dim, spec)
    index = new_index(spec, dim)
    _limit_opq(index, opq_iterations)
    shard = Shard(dim, model, spec, work_dir=work_dir)
    stream = (_checked(b, dim) for b in batches)

    # 1. hold back a training sample (and the tuning queries within it). An exact index
    #    (a flat scan) has nothing to tune: no queries are held back for it.
    tune_queries = 0 if spec.exact else tune_queries
    held: list[Batch] = []
    n_held = 0
    want = train_size if train_size is not None else default_train_size(spec)
    want = max(want, tune_queries)
    total = expected_count
    for batch in stream:
        held.append(batch)
        n_held += len(batch[0])
        if n_held >= want:
            break
    else:
        total = n_held  # the whole source is held
    if not held:
        raise ValueError("no vectors to build from")
    sample = np.concatenate([b[1] for b in held])[:want]
    # Held-out queries must leave vectors to search: at most half of a small source.
    n_queries = min(tune_queries, len(sample), total // 2 if total is not None else len(sample))
    if not spec.exact and n_queries == 0:
        logger.warning("%s: too few vectors to tune (%d); default knobs", spec.factory, n_held)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(sample), size=n_queries, replace=False))
    queries = np.ascontiguousarray(sample[pick])
    query_ids = np.concatenate([b[0] for b in held])[pick]
    all_attrs = [b[2] for b in held]
    query_attrs = VectorAttrs.build(
        *(np.concatenate([getattr(a, name) for a in all_attrs])[pick] for name in _ATTR_NAMES)
    )

    start = time.perf_counter()
    device = "cpu"
    if not index.is_trained:
        device = train_index(index, sample, train_threads)
    del sample
    train_seconds = time.perf_counter() - start

    # 2. add everything, streaming
    start = time.perf_counter()
    cols = Columns()
    ivf = faiss.try_extract_index_ivf(index)
    writer = RowWriter(shard.work_dir, dim) if spec.rerank else None
    depth = max(k, *DEPTHS)  # exact neighbours deep enough to tune deeper searches
    heap = faiss.ResultHeap(n_queries, depth, keep_max=True) if n_queries else None
    held_out = np.zeros(n_held, dtype=bool)
    held_out[pick] = True
    offset = 0
    with threads(add_threads):
        for ids, vectors, attrs in _chain(held, stream):
            if offset < n_held:  # tuning queries stay out of the index until tuned
                keep = ~held_out[offset : offset + len(ids)]
                offset += len(ids)
                ids, vectors, attrs = ids[keep], vectors[keep], _rows(attrs, keep)
                if len(ids) == 0:
                    continue
            slots = cols.append(ids, attrs)
            if ivf is not None:
                index.add_with_ids(vectors, slots)
            else:
                index.add(vectors)
            if writer is not None:
                writer.write(vectors)
            if heap is None:
                continue
            kk = min(depth, len(vectors))
            scores, rows = faiss.knn(queries, vectors, kk, faiss.METRIC_INNER_PRODUCT)
            found = np.where(rows >= 0, ids[np.maximum(rows, 0)], -1)
            if kk < depth:
                scores = np.pad(scores, ((0, 0), (0, depth - kk)), constant_values=-np.inf)
                found = np.pad(found, ((0, 0), (0, depth - kk)), constant_values=-1)
            heap.add_result(np.ascontiguousarray(scores), np.ascontiguousarray(found))
    rerank = writer.close() if writer is not None else None
    if ivf is not None:
        repack_ivf(ivf, cols.size)  # labels are the slots handed out above
    _drop_duplicates(cols)
    shard.install(index, cols, rerank)
    add_seconds = time.perf_counter() - start
    logger.info(
        "%s: added %d vectors in %.1fs%s, %.1f bytes each in memory",
        spec.factory,
        cols.size,
        add_seconds,
        f" ({n_queries} more held out to tune with)" if n_queries else "",
        shard.memory_bytes() / max(1, cols.size),
    )

    # 3. tune on the held-out queries against their exact neighbours
    start = time.perf_counter()
    if heap is not None:
        heap.finalize()
        report = autotune(shard, queries, heap.I, k=k, target=recall_target, n_shards=n_shards)
        shard.upsert(query_ids, queries, query_attrs)  # the held-out vectors join the index
        shard.compact()
        tuned = f"tuned {report['params']} recall@{k}={report['recall_at_k']:.3f}"
    else:
        report = {"params": shard.params.to_dict(), "k": k, "exact": spec.exact, "queries": 0}
        shard.tune_report = dict(report)
        tuned = "exact: nothing to tune" if spec.exact else "not tuned: too few vectors"
    tune_seconds = time.perf_counter() - start
    shard.last_applied = log_position
    logger.info(
        "built %s: %d vectors, train %.1fs, add %.1fs, %s",
        spec.factory,
        shard.n_vectors,
        train_seconds,
        add_seconds,
        tuned,
    )
    return BuiltIndex(
        shard=shard,
        spec=spec,
        log_position=log_position,
        n_vectors=shard.n_vectors,
        train_seconds=train_seconds,
        add_seconds=add_seconds,
        tune_seconds=tune_seconds,
        device=device,
        tune=report,
    )


def _limit_opq(index: faiss.Index, iterations: int) -> None:
    """OPQ's default 50 alternations dominate training time for little recall here."""
    if isinstance(index, faiss.IndexPreTransform):
        for i in range(index.chain.size()):
            transform = faiss.downcast_VectorTransform(index.chain.at(i))
            if isinstance(transform, faiss.OPQMatrix):
                transform.niter = iterations
                transform.max_train_points = min(transform.max_train_points, 131_072)


_ATTR_NAMES = ("product_ids", "category_ids", "prices", "in_stock")


def _rows(attrs: VectorAttrs, keep: np.ndarray) -> VectorAttrs:
    return VectorAttrs.build(*(getattr(attrs, name)[keep] for name in _ATTR_NAMES))


def _checked(batch: Batch, dim: int) -> Batch:
    ids, vectors, attrs = batch
    ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    vectors = np.asarray(vectors)
    if vectors.shape != (len(ids), dim) or len(attrs) != len(ids):
        raise ValueError(f"batch must be ids (n,), vectors (n, {dim}) and n attrs")
    return ids, normalise(vectors), attrs


def _chain(held: list[Batch], rest: Iterator[Batch]) -> Iterator[Batch]:
    return itertools.chain(held, rest)


def _drop_duplicates(cols: Columns) -> None:
    """If the source repeated an image id, its last vector wins (as in the live path)."""
    ids = cols["image_ids"]
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    repeated = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    cols.data["alive"][order[repeated]] = False
