"""Product image writes: uploads are checked before anything is stored.

Every write locks its product's row first (`lock_product`): an image added to a product
deleted meanwhile is a 404, not an orphan row or a foreign-key failure at commit, and two
uploads to one product take turns, so the second of two identical ones finds the first.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.shortcuts import get_object_or_404

from catalog.errors import ServiceError
from catalog.models import IndexState, Product, ProductImage, index_state_change
from catalog.services.enqueue import enqueue_encoding, enqueue_image_removal
from catalog.services.products import lock_product
from workers.encoding.images import (
    ImageHeader,
    ImageLimits,
    ImageRejected,
    LoadedImage,
    check_image_header,
    load_image_bytes,
)
from workers.encoding.urls import UrlPolicy

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}


def image_limits() -> ImageLimits:
    return ImageLimits(
        max_bytes=settings.IMAGE_MAX_BYTES,
        max_pixels=settings.IMAGE_MAX_PIXELS,
        max_side=settings.IMAGE_MAX_SIDE,
        max_aspect=settings.IMAGE_MAX_ASPECT,
        max_resized_pixels=settings.IMAGE_MAX_RESIZED_PIXELS,
        input_side=settings.IMAGE_INPUT_SIDE,
    )


def url_policy(*, total_timeout: float | None = None) -> UrlPolicy:
    """How image URLs are fetched, from settings (an encode worker's whole budget by default)."""
    return UrlPolicy(
        allow_private=settings.IMAGE_URL_ALLOW_PRIVATE,
        connect_timeout=settings.IMAGE_URL_CONNECT_TIMEOUT,
        read_timeout=settings.IMAGE_URL_READ_TIMEOUT,
        total_timeout=settings.IMAGE_URL_TOTAL_TIMEOUT if total_timeout is None else total_timeout,
    )


def _next_position(product: Product) -> int:
    current = product.images.aggregate(top=Max("position"))["top"]
    return 0 if current is None else current + 1


def read_upload(upload: UploadedFile, limits: ImageLimits) -> bytes:
    """Read an upload, refusing one over the byte cap without reading it all."""
    too_large = upload.size is not None and upload.size > limits.max_bytes
    data = b"" if too_large else upload.read(limits.max_bytes + 1)
    if too_large or len(data) > limits.max_bytes:
        size = f"{upload.size} bytes, " if upload.size else ""
        message = f"{size}over the limit of {limits.max_bytes} bytes (IMAGE_MAX_BYTES)"
        raise ServiceError(f"image is {message}", code="too_large", details={"image": [message]})
    return data


def check_image(data: bytes, limits: ImageLimits, *, field: str = "image") -> ImageHeader:
    """Refuse an image from its header alone (bytes, pixels, longest side, aspect, size
    after the model's resize), before it is decoded or sent to an encoder."""
    try:
        return check_image_header(data, limits=limits)
    except ImageRejected as exc:
        raise ServiceError(
            exc.message, code=exc.reason_code, details={field: [exc.message]}
        ) from exc


def check_upload(upload: UploadedFile) -> LoadedImage:
    """Decode an upload under the limits; leaves the file readable from the start."""
    limits = image_limits()
    data = read_upload(upload, limits)
    upload.seek(0)
    try:
        return load_image_bytes(data, limits=limits)
    except ImageRejected as exc:
        raise ServiceError(
            exc.message, code=exc.reason_code, details={"image": [exc.message]}
        ) from exc


def image_add_upload(
    *, product: Product, upload: UploadedFile, position: int | None = None
) -> ProductImage:
    """Add an uploaded image (or find the same bytes already uploaded to this product)."""
    image, _ = image_get_or_add_upload(product=product, upload=upload, position=position)
    return image


@transaction.atomic
def image_get_or_add_upload(
    *, product: Product, upload: UploadedFile, position: int | None = None
) -> tuple[ProductImage, bool]:
    """(image, created): the same bytes uploaded twice to one product are stored and encoded
    once; the second upload gets the first image back (its position unchanged)."""
    loaded = check_upload(upload)
    product = lock_product(product.pk)
    existing = _uploaded_twin(product, loaded.sha256)
    if existing is not None:
        return existing, False
    data = upload.read()
    image = ProductImage(
        product=product,
        position=_next_position(product) if position is None else position,
        sha256=loaded.sha256,
        width=loaded.width,
        height=loaded.height,
    )
    name = f"{loaded.sha256[:16]}.{EXTENSIONS.get(loaded.format, 'bin')}"
    image.image.save(name, ContentFile(data), save=False)
    try:
        with transaction.atomic():
            image.save()
    except IntegrityError:
        # A writer that does not take the product lock stored the same bytes first
        # (the unique constraint on product and sha256): answer with its image.
        image.image.storage.delete(image.image.name)
        existing = _uploaded_twin(product, loaded.sha256)
        if existing is None:
            raise
        return existing, False
    _mark_pending(product)
    return image, True


def _uploaded_twin(product: Product, sha256: str) -> ProductImage | None:
    """The product's uploaded image with these bytes (what `unique_upload_per_product`
    keeps unique), if any."""
    return product.images.filter(sha256=sha256, source_url="").order_by("pk").first()


@transaction.atomic
def image_add_url(
    *, product: Product, source_url: str, position: int | None = None
) -> ProductImage:
    """Record a remote image; an encode worker fetches it (with the URL policy) later."""
    parts = urlsplit(source_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ServiceError(
            "source_url must be an absolute http or https URL",
            code="bad_url",
            details={"source_url": ["must be an absolute http or https URL"]},
        )
    product = lock_product(product.pk)
    image = ProductImage(
        product=product,
        source_url=source_url,
        position=_next_position(product) if position is None else position,
    )
    image.full_clean()
    image.save()
    _mark_pending(product)
    return image


@transaction.atomic
def image_delete(*, image: ProductImage) -> None:
    """Delete an image (Http404 if it, or its product, is gone already)."""
    product = lock_product(image.product_id)
    image = get_object_or_404(ProductImage.objects.select_for_update(), pk=image.pk)
    stored = image.image.name if image.image else ""
    storage = image.image.storage
    image_id = image.pk
    image.delete()
    if stored:
        transaction.on_commit(lambda: storage.delete(stored))
    enqueue_image_removal(product_id=product.pk, image_ids=[image_id])
    _mark_pending(product)


def _mark_pending(product: Product) -> None:
    """Any image change sends the product back through encoding (which is idempotent)."""
    if product.is_active:
        Product.objects.filter(pk=product.pk).update(
            **index_state_change(IndexState.PENDING), index_error=""
        )
        enqueue_encoding([product.pk])
