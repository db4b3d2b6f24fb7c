"""The recall probe: what the live service returns against exact neighbours.

Stored embeddings are sampled as queries; their exact top-10 products are found by
a blockwise brute-force scan of the stored vectors (the source of truth), and the
service is asked the same queries through the normal search RPC. Recall@10 is
recorded overall and per shard (over the true neighbours that live in each shard).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from catalog import search
from catalog.models import Embedding, RecallMeasurement
from catalog.redis_clients import redis_client
from workers.encoding.registry import published_model
from workers.index.log import shard_for_product
from workers.index.types import SearchFilter

K = 10


@dataclass
class ProbeResult:
    recall: float
    per_shard: dict[int, float]
    queries: int
    latency_ms: list[float] = field(default_factory=list)
    partial: int = 0

    def latency_percentile_ms(self, q: float) -> float:
        """The q-th percentile of the probe's search latencies (0 with none)."""
        return float(np.percentile(self.latency_ms, q)) if self.latency_ms else 0.0


def _stored(model: str, dim: int, block: int):
    """(product ids, vectors) of active products' embeddings, in blocks."""
    rows = (
        Embedding.objects.filter(model=model, dim=dim, image__product__is_active=True)
        .order_by("image_id")
        .values_list("image__product_id", "vector")
        .iterator(chunk_size=block)
    )
    pids: list[int] = []
    raw: list[bytes] = []
    for pid, vector in rows:
        pids.append(pid)
        raw.append(bytes(vector))
        if len(pids) == block:
            yield np.asarray(pids, dtype=np.int64), _matrix(raw, dim)
            pids, raw = [], []
    if pids:
        yield np.asarray(pids, dtype=np.int64), _matrix(raw, dim)


def _matrix(raw: list[bytes], dim: int) -> np.ndarray:
    return np.frombuffer(b"".join(raw), dtype="<f4").reshape(-1, dim).astype(np.float32)


def exact_top_products(
    queries: np.ndarray, model: str, dim: int, k: int = K, block: int = 8192
) -> list[list[int]]:
    """Exact top-k products per query (a product scores as its best image)."""
    best: list[dict[int, float]] = [{} for _ in range(len(queries))]
    keep = k * 10  # image candidates per block: enough for products with several images
    for pids, vectors in _stored(model, dim, block):
        scores = queries @ vectors.T
        take = min(keep, scores.shape[1])
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        for q in range(len(queries)):
            row = best[q]
            for col in top[q]:
                pid, score = int(pids[col]), float(scores[q, col])
                if score > row.get(pid, -np.inf):
                    row[pid] = score
    return [sorted(row, key=row.__getitem__, reverse=True)[:k] for row in best]


def sample_queries(model: str, dim: int, n: int, seed: int | None = None) -> np.ndarray:
    ids = list(
        Embedding.objects.filter(model=model, dim=dim, image__product__is_active=True).values_list(
            "pk", flat=True
        )
    )
    if not ids:
        return np.empty((0, dim), dtype=np.float32)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(ids, size=min(n, len(ids)), replace=False)
    raw = Embedding.objects.filter(pk__in=chosen.tolist()).values_list("vector", flat=True)
    return _matrix([bytes(v) for v in raw], dim)


def run_probe(n_queries: int | None = None, *, seed: int | None = None) -> ProbeResult | None:
    """Measure and store recall@10 (overall and per shard); None when nothing is indexed."""
    published = published_model(redis_client())
    if published is None:
        return None
    model, dim = published
    queries = sample_queries(model, dim, n_queries or settings.RECALL_PROBE_QUERIES, seed)
    if not len(queries):
        return None
    truth = exact_top_products(queries, model, dim)
    client = search.search_client()
    hits_by_shard: dict[int, list[int]] = {}
    latency: list[float] = []
    partial = 0
    for query, expected in zip(queries, truth, strict=True):
        started = time.perf_counter()
        gathered = client.search(query.reshape(1, -1), K, SearchFilter())
        latency.append((time.perf_counter() - started) * 1e3)
        partial += gathered.partial
        found = {int(p) for p in gathered.result.product_ids[0] if p >= 0}
        for pid in expected:
            tally = hits_by_shard.setdefault(shard_for_product(pid, settings.SEARCH_SHARDS), [0, 0])
            tally[0] += pid in found
            tally[1] += 1
    found_total = sum(t[0] for t in hits_by_shard.values())
    expected_total = sum(t[1] for t in hits_by_shard.values())
    result = ProbeResult(
        recall=found_total / expected_total if expected_total else 1.0,
        per_shard={s: t[0] / t[1] for s, t in sorted(hits_by_shard.items())},
        queries=len(queries),
        latency_ms=latency,
        partial=partial,
    )
    _store(result)
    return result


def _store(result: ProbeResult) -> None:
    p50, p99 = (result.latency_percentile_ms(q) for q in (50, 99))
    rows = [
        RecallMeasurement(
            shard=None,
            recall_at_10=result.recall,
            queries=result.queries,
            latency_p50_ms=p50,
            latency_p99_ms=p99,
            partial_answers=result.partial,
        )
    ]
    rows += [
        RecallMeasurement(shard=s, recall_at_10=r, queries=result.queries)
        for s, r in result.per_shard.items()
    ]
    RecallMeasurement.objects.bulk_create(rows)
