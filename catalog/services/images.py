"""Product image writes: uploads are checked before anything is stored."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Max

from catalog.errors import ServiceError
from catalog.models import IndexState, Product, ProductImage
from catalog.services.enqueue import enqueue_encoding, enqueue_image_removal
from workers.encoding.images import ImageLimits, ImageRejected, LoadedImage, load_image_bytes

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}


def image_limits() -> ImageLimits:
    return ImageLimits(max_bytes=settings.IMAGE_MAX_BYTES, max_pixels=settings.IMAGE_MAX_PIXELS)


def _next_position(product: Product) -> int:
    current = product.images.aggregate(top=Max("position"))["top"]
    return 0 if current is None else current + 1


def read_upload(upload: UploadedFile, limits: ImageLimits) -> bytes:
    """Read an upload, refusing one over the byte cap without reading it all."""
    if upload.size is not None and upload.size > limits.max_bytes:
        raise ServiceError(
            f"image is {upload.size} bytes; the limit is {limits.max_bytes}",
            code="too_large",
            details={"image": [f"larger than {limits.max_bytes} bytes"]},
        )
    data = upload.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise ServiceError(f"image exceeds {limits.max_bytes} bytes", code="too_large")
    return data


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


@transaction.atomic
def image_add_upload(
    *, product: Product, upload: UploadedFile, position: int | None = None
) -> ProductImage:
    loaded = check_upload(upload)
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
    image.save()
    _mark_pending(product)
    return image


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
    product = image.product
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
        Product.objects.filter(pk=product.pk).update(index_state=IndexState.PENDING, index_error="")
        enqueue_encoding([product.pk])
