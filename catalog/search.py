"""Search: turn a query into a vector, ask every shard over the Redis RPC, join the products.

The web process never loads torch: text and image queries are encoded by the
encode workers over the same RPC (with a Redis cache in front), unless
SEARCH_ENCODE_IN_PROCESS is set for a small single-machine deployment.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import redis
from django.conf import settings
from django.http import Http404

from catalog import product_cache
from catalog.errors import ServiceError, ServiceUnavailable
from catalog.models import Category, Product
from workers.encoding.registry import published_model
from workers.index.types import SearchFilter, SearchResult
from workers.observability.context import current_request_id, new_request_id
from workers.rpc.cache import QueryEmbeddingCache
from workers.rpc.client import EncodeClient, SearchClient, ServedShards
from workers.rpc.connection import connect
from workers.rpc.errors import BadRequest, NoWorkerAvailable, RemoteError, RpcUnavailable


@dataclass(frozen=True)
class Hit:
    product: dict  # its card: the products API's representation, media URLs relative
    score: float
    image_id: int | None  # the image that matched (None: found by its words alone)


@dataclass(frozen=True)
class SearchPage:
    hits: list[Hit]
    took_ms: float
    answered: int
    total: int
    missing: tuple[int, ...] = ()  # shards that did not answer: none served, late or failed

    @property
    def partial(self) -> bool:
        return self.answered < self.total


@functools.cache
def _rpc_redis(url: str) -> redis.Redis:
    rpc = settings.WORKER_CONFIG.rpc
    return connect(url, socket_timeout=rpc.socket_timeout_s, connect_timeout=rpc.connect_timeout_s)


def rpc_redis() -> redis.Redis:
    """This process's connection pool to the RPC Redis (also holds the rate-limit counters)."""
    return _rpc_redis(settings.REDIS_URL)


@functools.cache
def _search_client(url: str, n_shards: int, timeout_s: float) -> SearchClient:
    client = _rpc_redis(url)
    return SearchClient(
        client,
        n_shards,
        timeout_s=timeout_s,
        served=ServedShards(client, n_shards),
        limits=settings.WORKER_CONFIG.protocol,
    )


def search_client() -> SearchClient:
    """One per process: it remembers which shards are served between requests."""
    return _search_client(settings.REDIS_URL, settings.SEARCH_SHARDS, settings.SEARCH_TIMEOUT_S)


_MODEL_TTL_S = 30.0
_model_seen: tuple[float, str] = (0.0, "")


def _model_name() -> str:
    """The model the encode workers actually run (it may be the offline fallback).

    Looked up at most every 30 s per process: it changes only when encoders restart.
    """
    global _model_seen
    checked_at, name = _model_seen
    if name and time.monotonic() - checked_at < _MODEL_TTL_S:
        return name
    try:
        published = published_model(rpc_redis())
    except redis.RedisError as exc:
        raise ServiceUnavailable(f"Redis is unreachable: {exc}") from exc
    name = published[0] if published else settings.CLIP_MODEL
    if published:
        _model_seen = (time.monotonic(), name)
    return name


def query_encoder() -> EncodeClient:
    """The RPC client of the encode workers, or (SEARCH_ENCODE_IN_PROCESS) a local encoder."""
    ttl = settings.QUERY_CACHE_TTL_S
    if settings.SEARCH_ENCODE_IN_PROCESS:
        from workers.encoding.process import process_encoder
        from workers.rpc.encode import LocalEncoder

        encoder = process_encoder(
            settings.CLIP_MODEL,
            str(settings.CLIP_FALLBACK_DIR),
            limits=settings.WORKER_CONFIG.images,
        )
        cache = QueryEmbeddingCache(rpc_redis(), encoder.model_name, ttl_s=ttl)
        return LocalEncoder(encoder, cache=cache)  # type: ignore[return-value]
    cache = QueryEmbeddingCache(rpc_redis(), _model_name(), ttl_s=ttl)
    return EncodeClient(
        rpc_redis(),
        cache=cache,
        timeout_s=settings.ENCODE_TIMEOUT_S,
        limits=settings.WORKER_CONFIG.protocol,
    )


def build_filter(
    *,
    category: str | None = None,
    min_price: float | None = None,
    max_price: float | None = None,
    in_stock: bool | None = None,
) -> SearchFilter:
    """The shard filter; a category slug covers its sub-categories."""
    category_ids = None
    if category:
        root = Category.objects.filter(slug=category).first()
        if root is None:
            raise ServiceError(
                f"unknown category {category!r}", details={"category": ["unknown category"]}
            )
        category_ids = _with_descendants(root.pk)
    return SearchFilter(
        category_ids=category_ids, min_price=min_price, max_price=max_price, in_stock=in_stock
    )


def _with_descendants(root: int) -> frozenset[int]:
    parents = dict(Category.objects.values_list("pk", "parent_id"))
    found = {root}
    changed = True
    while changed:
        new = {pk for pk, parent in parents.items() if parent in found} - found
        found |= new
        changed = bool(new)
    return frozenset(found)


def _trace_id() -> str:
    """The request id (RequestIdMiddleware), so the shards' and encoders' logs carry it."""
    return current_request_id() or new_request_id()


def _encode(call, *args: object) -> np.ndarray:
    try:
        return call(*args, trace_id=_trace_id())
    except BadRequest as exc:
        raise ServiceError(
            str(exc), code="unreadable_image", details={"image": [str(exc)]}
        ) from exc
    except ValueError as exc:
        raise ServiceError(str(exc)) from exc
    except (NoWorkerAvailable, RpcUnavailable, RemoteError) as exc:
        raise ServiceUnavailable(f"query encoding is unavailable: {exc}") from exc


def normal_text(text: str) -> str:
    """The query as CLIP's tokenizer reads it (lower case, words split on whitespace), so
    "Red  Shoes" and "red shoes" share one cached vector and one encoder run."""
    return " ".join(text.lower().split())


def text_vector(text: str) -> np.ndarray:
    return _encode(query_encoder().encode_text, normal_text(text))


def image_vector(data: bytes) -> np.ndarray:
    return _encode(query_encoder().encode_image, data)


def product_vector(product_id: int, replies: Mapping[tuple, object] | None = None) -> np.ndarray:
    """'More like this': the active product's first stored image embedding, no re-encoding.

    Cached in Redis (`catalog.product_cache`; `replies`: that cache's reply already read,
    see `product_cache.stored_vector`); Http404 when there is no such active product.
    """
    if not 0 < product_id < 2**63:  # ids are positive 64-bit integers; the URL takes any
        raise Http404("No active product with this id.")
    vector = product_cache.stored_vector(rpc_redis(), product_id, replies)
    if vector is None:
        if not Product.objects.filter(pk=product_id, is_active=True).exists():
            raise Http404("No active product with this id.")
        raise ServiceError(
            "this product has no encoded image yet",
            code="not_indexed",
            details={"id": ["not indexed"]},
        )
    return vector


@dataclass(frozen=True)
class VectorRanking:
    """The shards' answer to one query vector, merged: best first, one row per product."""

    product_ids: list[int]
    scores: list[float]  # cosine similarity
    image_ids: list[int]  # the image of each product that matched
    answered: int
    total: int
    missing: tuple[int, ...]


def ranked_rows(
    result: SearchResult, *, k: int, exclude_product: int | None = None
) -> list[tuple[int, float, int]]:
    """(product id, score, image id) of the first query's hits, best first, at most k.

    Equal scores (products with the same picture) go in product-id order: the shard and
    slot each came from change with upserts, and pages must not swap them between calls."""
    products, scores, images = result.product_ids[0], result.scores[0], result.image_ids[0]
    order = np.lexsort((products, -scores))
    columns = (products[order].tolist(), scores[order].tolist(), images[order].tolist())
    return [
        (pid, score, iid)
        for pid, score, iid in zip(*columns, strict=True)
        if pid >= 0 and pid != exclude_product
    ][:k]


def vector_ranking(
    vector: np.ndarray, *, k: int, filters: SearchFilter, exclude_product: int | None = None
) -> VectorRanking:
    """Top-k products for one query vector from every shard that answers in time."""
    ask = k + (1 if exclude_product is not None else 0)
    try:
        gathered = search_client().search(vector.reshape(1, -1), ask, filters, trace_id=_trace_id())
    except BadRequest as exc:
        raise ServiceError(str(exc)) from exc
    except ValueError as exc:
        raise ServiceError(str(exc)) from exc
    except (NoWorkerAvailable, RpcUnavailable) as exc:
        raise ServiceUnavailable(f"search is unavailable: {exc}") from exc
    rows = ranked_rows(gathered.result, k=k, exclude_product=exclude_product)
    return VectorRanking(
        product_ids=[pid for pid, _, _ in rows],
        scores=[score for _, score, _ in rows],
        image_ids=[iid for _, _, iid in rows],
        answered=len(gathered.answered),
        total=gathered.total,
        missing=tuple(s for s in range(gathered.total) if s not in gathered.answered),
    )


def search(
    vector: np.ndarray,
    *,
    k: int,
    filters: SearchFilter,
    exclude_product: int | None = None,
    replies: Mapping[tuple, object] | None = None,
) -> SearchPage:
    """Top-k active products for one query vector; partial when some shards did not answer.
    `replies`: Redis replies a view already read (see `product_cache.cards`)."""
    started = time.perf_counter()
    ranking = vector_ranking(vector, k=k, filters=filters, exclude_product=exclude_product)
    cards = product_cache.cards(rpc_redis(), ranking.product_ids, replies)
    hits = [
        Hit(cards[pid], score, iid)
        for pid, score, iid in zip(
            ranking.product_ids, ranking.scores, ranking.image_ids, strict=True
        )
        if pid in cards
    ]
    return SearchPage(
        hits=hits,
        took_ms=(time.perf_counter() - started) * 1e3,
        answered=ranking.answered,
        total=ranking.total,
        missing=ranking.missing,
    )


def similar_products(product_id: int, k: int) -> list[dict] | None:
    """The cards of up to k products most like this one, for its page; None when that
    cannot be answered now (no shard answered, the product is not encoded yet, Redis or
    the workers are away), which the page says in words instead of failing."""
    try:
        page = search(
            product_vector(product_id), k=k, filters=SearchFilter(), exclude_product=product_id
        )
    except (ServiceError, Http404, redis.RedisError):
        return None
    if page.answered == 0:
        return None
    return [hit.product for hit in page.hits]
