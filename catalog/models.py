"""Catalog data: the source of truth the search index is built from."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models.functions import Upper
from django.utils import timezone

from catalog.card_invalidation import forget


class Category(models.Model):
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=120, unique=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class IndexState(models.TextChoices):
    PENDING = "pending", "Pending"
    ENCODING = "encoding", "Encoding"
    INDEXED = "indexed", "Indexed"
    FAILED = "failed", "Failed"
    NO_IMAGE = "no_image", "Not indexed: no image"
    REMOVED = "removed", "Removed from index"


# The states a product passes through on its way into the index: one that stays in
# such a state is stuck (the reconcile report lists those past RECONCILE_STUCK_AFTER_S).
IN_FLIGHT_STATES = (IndexState.PENDING, IndexState.ENCODING)


def index_state_change(state: str) -> dict[str, object]:
    """The fields of setting a product's index state, for `update()`: a queryset update bumps
    no auto_now field, so when the product entered the state is written beside it (the
    reconcile report of products stuck in a state reads it)."""
    return {"index_state": state, "index_state_at": timezone.now()}


class CardForgettingQuerySet(models.QuerySet):
    """Bulk updates send no signals: `update()` forgets the touched products' cached cards
    (catalog.product_cache) itself; `product_field` names the rows' product id."""

    product_field = "pk"

    def update(self, **kwargs: object) -> int:
        product_ids = list(self.values_list(self.product_field, flat=True))
        count = super().update(**kwargs)
        forget(product_ids)
        return count


class Product(models.Model):
    sku = models.CharField(max_length=64, unique=True)
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    brand = models.CharField(max_length=120, blank=True, db_index=True)
    category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="products"
    )
    price = models.DecimalField(max_digits=12, decimal_places=2, validators=[MinValueValidator(0)])
    currency = models.CharField(max_length=3, default="USD")
    in_stock = models.BooleanField(default=True)
    is_active = models.BooleanField(default=True)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    index_state = models.CharField(
        max_length=16, choices=IndexState.choices, default=IndexState.PENDING, db_index=True
    )
    index_state_at = models.DateTimeField(
        default=timezone.now, help_text="When index_state was last set"
    )
    index_error = models.TextField(blank=True)

    objects = CardForgettingQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["category", "price"]),
            models.Index(fields=["index_state", "index_state_at"]),
            # a SKU typed into the search box, any case (catalog/text_search.py)
            models.Index(Upper("sku"), name="catalog_product_sku_upper"),
            # a brand filter, any case (catalog.selectors.equal_in_any_case)
            models.Index(Upper("brand"), name="catalog_product_brand_upper"),
        ]

    def __str__(self) -> str:
        return f"{self.sku} {self.title}"


def product_image_path(instance: ProductImage, filename: str) -> str:
    return f"products/{instance.product_id}/{filename}"


class ProductImageQuerySet(CardForgettingQuerySet):
    product_field = "product_id"


class ProductImage(models.Model):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="images")
    image = models.FileField(upload_to=product_image_path, blank=True, max_length=300)
    source_url = models.URLField(blank=True, max_length=2000)
    position = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="Why this image could not be loaded or encoded")
    created_at = models.DateTimeField(auto_now_add=True)
    # Saved with the row (a new file in the admin), not by the encoders' update() calls: how
    # long the stored file has had to reach shared storage (catalog/stored_files.py).
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProductImageQuerySet.as_manager()

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(image="") | ~models.Q(source_url=""),
                name="image_has_file_or_url",
            ),
            # The same bytes are uploaded (stored, encoded) once per product. Images from a
            # URL are left out: their hash comes later from the encoder, and two URLs may
            # serve the same bytes.
            models.UniqueConstraint(
                fields=["product", "sha256"],
                condition=~models.Q(sha256="") & models.Q(source_url=""),
                name="unique_upload_per_product",
            ),
        ]

    def __str__(self) -> str:
        return f"image {self.pk} of product {self.product_id}"


class Embedding(models.Model):
    """The CLIP vector of one product image: what the search index is rebuilt from."""

    image = models.OneToOneField(ProductImage, on_delete=models.CASCADE, related_name="embedding")
    model = models.CharField(max_length=200)
    dim = models.PositiveIntegerField()
    vector = models.BinaryField(help_text="float32, little-endian, `dim` values")
    source_sha256 = models.CharField(max_length=64)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # Covers the reconcile's read of (image id) by model and dim: no table row (each
        # holds a vector) is read for it, 3x faster on 100k rows. Also serves `model=`.
        indexes = [models.Index(fields=["model", "dim", "image"])]

    def __str__(self) -> str:
        return f"embedding of image {self.image_id} ({self.model}, {self.dim}d)"


class RecallMeasurement(models.Model):
    """One run of the recall probe: the service's top-10 against exact neighbours."""

    measured_at = models.DateTimeField(auto_now_add=True, db_index=True)
    shard = models.IntegerField(null=True, blank=True, help_text="empty: all shards together")
    recall_at_10 = models.FloatField()
    queries = models.PositiveIntegerField()
    latency_p50_ms = models.FloatField(null=True, blank=True)
    latency_p99_ms = models.FloatField(null=True, blank=True)
    partial_answers = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-measured_at", "shard"]

    def __str__(self) -> str:
        where = "all shards" if self.shard is None else f"shard {self.shard}"
        return f"recall@10 {self.recall_at_10:.3f} on {where} at {self.measured_at:%Y-%m-%d %H:%M}"
