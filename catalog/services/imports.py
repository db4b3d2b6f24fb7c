"""Bulk catalog import (JSON Lines or CSV), upserting by sku."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DataError, IntegrityError, transaction
from django.utils.text import slugify
from rest_framework import serializers

from catalog.errors import ServiceError
from catalog.models import Category, Product
from catalog.services import images as image_services
from catalog.services import products as product_services
from catalog.services.enqueue import batched_encoding
from catalog.services.import_files import MAX_FIELD_CHARS
from catalog.services.import_paths import import_file_read


class ImportRow(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    title = serializers.CharField(max_length=300)
    description = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=MAX_FIELD_CHARS
    )
    brand = serializers.CharField(required=False, allow_blank=True, default="", max_length=120)
    category = serializers.CharField(required=False, allow_blank=True, default="", max_length=120)
    category_name = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=120
    )
    price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0)
    currency = serializers.RegexField(r"^[A-Za-z]{3}$", required=False, default="USD")
    in_stock = serializers.BooleanField(required=False, default=True)
    images = serializers.ListField(
        child=serializers.CharField(max_length=2000), required=False, default=list, max_length=20
    )
    # Absent: a product's attributes are left as they are (an update does not clear them).
    attributes = serializers.JSONField(required=False)

    def validate_attributes(self, value: Any) -> dict[str, Any]:
        """A flat JSON object of at most MAX_ATTRIBUTES short keys and scalar values (a CSV
        cell holds its JSON text)."""
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object")
        if len(value) > MAX_ATTRIBUTES:
            raise serializers.ValidationError(f"at most {MAX_ATTRIBUTES} attributes")
        for key, item in value.items():
            if not 0 < len(key) <= 64:
                raise serializers.ValidationError("names are 1 to 64 characters")
            if not isinstance(item, str | int | float | bool) or item != item:  # not NaN
                raise serializers.ValidationError(f"{key}: values are strings, numbers or booleans")
            if isinstance(item, str) and len(item) > 200:
                raise serializers.ValidationError(f"{key}: at most 200 characters")
        return value


MAX_ATTRIBUTES = 50


MAX_KEPT_REJECTS = 1000


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected_count: int = 0
    # (line, reason) of the first MAX_KEPT_REJECTS rejected rows: a file of garbage must not
    # fill memory with reasons.
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def reject(self, line: int, reason: str) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_KEPT_REJECTS:
            self.rejected.append((line, reason))


def _category(slug: str, name: str) -> Category | None:
    if not slug:
        return None
    slug = slugify(slug)
    category, _ = Category.objects.get_or_create(slug=slug, defaults={"name": name or slug.title()})
    return category


def _add_images(product: Product, sources: list[str], image_root: Path) -> None:
    known_urls = set(product.images.exclude(source_url="").values_list("source_url", flat=True))
    known_hashes = set(product.images.values_list("sha256", flat=True))
    for source in sources:
        if source.startswith(("http://", "https://")):
            if source not in known_urls:
                image_services.image_add_url(product=product, source_url=source)
            continue
        data = import_file_read(
            source=source, root=image_root, max_bytes=image_services.image_limits().max_bytes
        )
        upload = SimpleUploadedFile(Path(source).name, data)
        loaded = image_services.check_upload(upload)
        if loaded.sha256 not in known_hashes:
            image_services.image_add_upload(product=product, upload=upload)
            known_hashes.add(loaded.sha256)


def _upsert(data: dict[str, Any], image_root: Path) -> str:
    """Create or update one product and its images; returns the ImportReport counter to bump."""
    category = _category(data.pop("category"), data.pop("category_name"))
    sources = data.pop("images")
    data["currency"] = data["currency"].upper()
    product = Product.objects.filter(sku=data["sku"]).first()
    if product is None:
        product = product_services.product_create(category=category, **data)
        outcome = "created"
    else:
        changes = {
            k: v for k, v in {**data, "category": category}.items() if getattr(product, k) != v
        }
        if changes:
            product = product_services.product_update(product=product, **changes)
            outcome = "updated"
        else:
            outcome = "unchanged"
    _add_images(product, sources, image_root)
    return outcome


def import_rows(
    rows: Iterable[tuple[int, dict[str, Any]]],
    *,
    chunk_size: int = 100,
    image_root: Path | None = None,
    on_row: Callable[[], None] | None = None,
) -> ImportReport:
    """Validate and upsert rows; a bad row is rejected with its reason, the rest go on.

    Each chunk commits on its own and queues its encoding as whole batches. Local image
    paths are read under `image_root` (settings.IMPORT_ROOT by default) only.
    """
    report = ImportReport()
    root = Path(image_root or settings.IMPORT_ROOT)
    chunk: list[tuple[int, dict[str, Any]]] = []

    def flush() -> None:
        with transaction.atomic(), batched_encoding():
            for line, raw in chunk:
                _import_one(line, raw, report, root)
        chunk.clear()

    iterator = iter(rows)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            break
        except Exception:
            flush()  # the rows read before a failing read (an I/O error) are kept
            raise
        chunk.append(item)
        if len(chunk) >= chunk_size:
            flush()
        if on_row:
            on_row()
    if chunk:
        flush()
    return report


def _import_one(line: int, raw: dict[str, Any], report: ImportReport, image_root: Path) -> None:
    if "__error__" in raw:
        report.reject(line, str(raw["__error__"]))
        return
    form = ImportRow(data=raw)
    if not form.is_valid():
        reasons = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in form.errors.items())
        report.reject(line, reasons)
        return
    try:
        with transaction.atomic():  # a savepoint: a refused row leaves the chunk intact
            outcome = _upsert(dict(form.validated_data), image_root)
    except ServiceError as exc:
        report.reject(line, exc.message)
    except ValidationError as exc:
        report.reject(line, "; ".join(exc.messages))
    except (DataError, IntegrityError) as exc:
        # Whatever validation let through and the database still refused (a constraint,
        # a value out of its range): this row only.
        report.reject(line, f"refused by the database: {str(exc).strip().splitlines()[0][:200]}")
    else:
        setattr(report, outcome, getattr(report, outcome) + 1)
