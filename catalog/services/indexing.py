"""From catalog rows to index entries: encode images, store embeddings, feed the shard logs.

Runs in encode workers. Every function here is idempotent: running it twice
(a redelivered task) leaves the same embeddings, states and index contents.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.db import transaction

from catalog.models import Embedding, IndexState, Product, ProductImage, index_state_change
from catalog.redis_clients import redis_client
from catalog.services.encode_leases import encode_lease
from catalog.stored_files import StoredFileOutcome, read_stored_file
from workers.encoding.errors import ImageRejected
from workers.encoding.images import LoadedImage, fetch_image_url, load_image_bytes
from workers.encoding.registry import published_model
from workers.index.log import Durability, UpdateLog, shard_for_product
from workers.index.types import VectorAttrs
from workers.observability.metrics import ENCODE_FAILURES, ENCODE_IMAGES

if TYPE_CHECKING:
    from workers.encoding.encoder import ClipEncoder

logger = logging.getLogger(__name__)


class TransientEncodeError(Exception):
    """Some images failed for a reason worth retrying (timeouts, 5xx); carries their products."""

    def __init__(self, product_ids: list[int], reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.product_ids = product_ids


@dataclass
class EncodeReport:
    products: int = 0
    encoded: int = 0
    reused: int = 0
    failed: int = 0
    published: int = 0
    transient: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {
            "products": self.products,
            "encoded": self.encoded,
            "reused": self.reused,
            "failed": self.failed,
            "published": self.published,
            "retry": len(self.transient),
        }


def log_durability() -> Durability:
    """How many Redis replicas an append waits for (REDIS_MIN_REPLICAS_ACK; 0: none)."""
    return Durability(settings.REDIS_MIN_REPLICAS_ACK, settings.REDIS_REPLICAS_ACK_TIMEOUT_MS)


def shard_log(shard: int, model: str, dim: int) -> UpdateLog:
    return UpdateLog(redis_client(), shard, model=model, dim=dim, durability=log_durability())


def vector_of(embedding: Embedding) -> np.ndarray:
    vector = np.frombuffer(bytes(embedding.vector), dtype="<f4")
    if vector.shape != (embedding.dim,):
        raise ValueError(
            f"embedding {embedding.pk} holds {vector.size} floats, not {embedding.dim}"
        )
    return vector


def _image_loader():
    """Stored files and source URLs, read under the same limits as the web's uploads.

    A stored file that cannot be read is `missing_file` only when the storage says it is
    not there and the image row is older than MEDIA_MISSING_AFTER_S; a young one, or a
    storage that fails to answer, is a transient failure: the task retries.
    """
    from catalog.services.images import image_limits, url_policy

    limits, policy = image_limits(), url_policy()
    missing_after_s = float(settings.MEDIA_MISSING_AFTER_S)

    def load(image: ProductImage) -> LoadedImage:
        if image.image:
            read = read_stored_file(
                image.image.storage,
                image.image.name,
                max_bytes=limits.max_bytes + 1,
                saved_at=image.updated_at,
                missing_after_s=missing_after_s,
            )
            if read.outcome is not StoredFileOutcome.READ:
                raise ImageRejected(
                    read.outcome.value, read.detail, transient=read.outcome.transient
                )
            return load_image_bytes(read.data, limits=limits)
        return fetch_image_url(image.source_url, limits=limits, policy=policy)

    return load


def _backlog(product_ids: list[int], batch_products: int) -> list[int]:
    """The asked-for products plus other pending ones, so many small saves share one batch."""
    room = batch_products - len(product_ids)
    if room <= 0:
        return product_ids
    extra = (
        Product.objects.filter(index_state=IndexState.PENDING, is_active=True)
        .exclude(pk__in=product_ids)
        .order_by("updated_at")
        .values_list("pk", flat=True)[:room]
    )
    return [*product_ids, *extra]


def encode_products(
    product_ids: Iterable[int], *, encoder: ClipEncoder, batch_products: int | None = None
) -> EncodeReport:
    """Encode what is new, reuse what is unchanged, and publish every active product's vectors."""
    batch_products = batch_products or settings.ENCODE_BATCH_PRODUCTS
    ids = _backlog(sorted({int(i) for i in product_ids}), batch_products)
    products = list(
        Product.objects.filter(pk__in=ids)
        .select_related("category")
        .prefetch_related("images__embedding")
    )
    report = EncodeReport(products=len(products))
    inactive = [p.pk for p in products if not p.is_active]
    if inactive:
        remove_products(inactive)
    active = [p for p in products if p.is_active]
    model, dim = encoder.model_name, encoder.dim
    # An indexed product with nothing to encode stays `indexed` (a task sent twice must not
    # show it as in flight, nor forget its cached card); the others are `encoding` now.
    starting = [
        p.pk
        for p in active
        if p.index_state != IndexState.INDEXED
        or any(_needs_encoding(image, model, dim) for image in p.images.all())
    ]
    # The lease comes first: a sweep that sees `encoding` without one re-sends the products.
    with encode_lease([p.pk for p in active]):
        Product.objects.filter(pk__in=starting).update(**index_state_change(IndexState.ENCODING))
        failures, transient = _encode(active, encoder, report)
        report.published = _publish([p.pk for p in active], model, dim, failures, transient)
    report.transient = sorted(transient)
    if transient:
        raise TransientEncodeError(report.transient, [r for p in transient for r in failures[p]])
    return report


def _needs_encoding(image: ProductImage, model: str, dim: int) -> bool:
    """No embedding of this model for the image's current bytes."""
    embedding = getattr(image, "embedding", None)
    return not (
        embedding is not None
        and embedding.model == model
        and embedding.dim == dim
        and image.sha256
        and embedding.source_sha256 == image.sha256
    )


def _encode(
    active: list[Product], encoder: ClipEncoder, report: EncodeReport
) -> tuple[dict[int, list[str]], set[int]]:
    """Encode the images without a current embedding; their failures by product."""
    model, dim = encoder.model_name, encoder.dim
    todo: list[ProductImage] = []
    for product in active:
        for image in product.images.all():
            if _needs_encoding(image, model, dim):
                todo.append(image)
            else:
                report.reused += 1

    failures: dict[int, list[str]] = defaultdict(list)
    transient: set[int] = set()
    load = _image_loader()
    for item in encoder.encode_image_sources(todo, load):
        image = item.source
        if hasattr(item, "vector"):
            _store_embedding(
                image,
                item.vector,
                model,
                item.sha256 or image.sha256,
                width=item.width,
                height=item.height,
            )
            report.encoded += 1
            ENCODE_IMAGES.inc()
            continue
        ENCODE_FAILURES.labels(item.reason_code).inc()
        reason = f"image {image.pk}: {item.message}"
        failures[image.product_id].append(reason)
        if item.transient:
            transient.add(image.product_id)
        else:
            ProductImage.objects.filter(pk=image.pk).update(
                error=f"{item.reason_code}: {item.message}"
            )
            report.failed += 1
    return failures, transient


def _store_embedding(
    image: ProductImage,
    vector: np.ndarray,
    model: str,
    sha256: str,
    *,
    width: int | None,
    height: int | None,
) -> None:
    data = np.ascontiguousarray(vector, dtype="<f4").tobytes()
    with transaction.atomic():
        Embedding.objects.update_or_create(
            image_id=image.pk,
            defaults={
                "model": model,
                "dim": int(vector.shape[0]),
                "vector": data,
                "source_sha256": sha256,
            },
        )
        ProductImage.objects.filter(pk=image.pk).update(
            sha256=sha256, width=width, height=height, error=""
        )


def _publish(
    product_ids: list[int],
    model: str,
    dim: int,
    failures: dict[int, list[str]],
    transient: set[int],
) -> int:
    """Append upserts for every stored vector of these products, then set their states."""
    products = (
        Product.objects.filter(pk__in=product_ids, is_active=True)
        .select_related("category")
        .prefetch_related("images__embedding")
    )
    by_shard: dict[int, list[tuple[int, Product, np.ndarray]]] = defaultdict(list)
    states: dict[int, tuple[str, str]] = {}
    for product in products:
        images = list(product.images.all())
        vectors = [
            (image.pk, vector_of(image.embedding))
            for image in images
            if getattr(image, "embedding", None) is not None
            and image.embedding.model == model
            and not image.error
        ]
        # Images added after this run's encoding pass: the task queued for them will come.
        unencoded = [
            image
            for image in images
            if not image.error and getattr(image, "embedding", None) is None
        ]
        shard = shard_for_product(product.pk, settings.SEARCH_SHARDS)
        by_shard[shard].extend((image_id, product, vector) for image_id, vector in vectors)
        errors = "\n".join(failures.get(product.pk, []))
        if product.pk in transient or unencoded:
            states[product.pk] = (IndexState.PENDING, errors)
        elif not images:
            states[product.pk] = (IndexState.NO_IMAGE, "the product has no image to encode")
        elif vectors:
            states[product.pk] = (IndexState.INDEXED, errors)
        else:
            states[product.pk] = (IndexState.FAILED, errors or "no image could be encoded")

    published = 0
    for shard, rows in by_shard.items():
        if not rows:
            continue
        attrs = VectorAttrs.build(
            product_ids=[p.pk for _, p, _ in rows],
            category_ids=[p.category_id if p.category_id is not None else -1 for _, p, _ in rows],
            prices=[float(p.price) for _, p, _ in rows],
            in_stock=[p.in_stock for _, p, _ in rows],
        )
        vectors = np.stack([v for _, _, v in rows]).astype(np.float32, copy=False)
        ids = np.asarray([image_id for image_id, _, _ in rows], dtype=np.int64)
        shard_log(shard, model, dim).append_upserts(ids, vectors, attrs)
        published += len(rows)
    for pk, (state, error) in states.items():
        # unchanged rows are left alone: their state's time and cached card stay
        Product.objects.filter(pk=pk, is_active=True).exclude(
            index_state=state, index_error=error
        ).update(**index_state_change(state), index_error=error)
    return published


def remove_products(product_ids: Iterable[int]) -> dict[str, int]:
    """Append deletes for the images of products that are (still) inactive."""
    products = Product.objects.filter(pk__in=list(product_ids), is_active=False)
    removed = 0
    by_shard: dict[int, list[int]] = defaultdict(list)
    for product_id, image_id in ProductImage.objects.filter(product__in=products).values_list(
        "product_id", "pk"
    ):
        by_shard[shard_for_product(product_id, settings.SEARCH_SHARDS)].append(image_id)
    for shard, image_ids in by_shard.items():
        append_deletes(shard, image_ids)
        removed += len(image_ids)
    products.update(**index_state_change(IndexState.REMOVED))
    return {"removed": removed}


def remove_images(product_id: int, image_ids: Iterable[int]) -> dict[str, int]:
    """Append deletes for images that no longer exist (deleted images or products)."""
    gone = set(image_ids) - set(
        ProductImage.objects.filter(pk__in=list(image_ids)).values_list("pk", flat=True)
    )
    if gone:
        append_deletes(shard_for_product(product_id, settings.SEARCH_SHARDS), sorted(gone))
    return {"removed": len(gone)}


def append_deletes(shard: int, image_ids: list[int]) -> None:
    """Deletes carry the running encoder's model, like the upserts they cancel."""
    client = redis_client()
    model, dim = published_model(client) or (settings.CLIP_MODEL, 0)
    UpdateLog(client, shard, model=model, dim=dim, durability=log_durability()).append_deletes(
        np.asarray(image_ids, dtype=np.int64)
    )
