"""Migration 0003 keeps one upload per product and hash before adding the constraint."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from tests.support.migrations import latest, migrate

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("catalog", "0002_recall_measurement")]
AFTER = [("catalog", "0003_unique_upload_per_product")]


def test_duplicate_uploads_are_dropped_oldest_kept(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    apps = migrate(BEFORE)
    try:
        Product = apps.get_model("catalog", "Product")
        ProductImage = apps.get_model("catalog", "ProductImage")
        one = Product.objects.create(sku="A", title="a", price=1)
        two = Product.objects.create(sku="B", title="b", price=1)

        def upload(product, name: str, sha: str):
            image = ProductImage(product=product, sha256=sha)
            image.image.save(name, ContentFile(b"bytes"), save=False)
            image.save()
            return image

        keep = upload(one, "keep.png", "aa" * 32)
        extra = [upload(one, f"extra{n}.png", "aa" * 32) for n in range(2)]
        other = upload(two, "other.png", "aa" * 32)  # another product: kept
        urls = [
            ProductImage.objects.create(product=one, source_url=f"https://x/{n}", sha256="bb" * 32)
            for n in range(2)
        ]
        migrate(AFTER)
        left = set(ProductImage.objects.values_list("pk", flat=True))
        assert left == {keep.pk, other.pk, *(u.pk for u in urls)}
        files = {p.name for p in (tmp_path / "products").rglob("*.png")}
        assert files == {"keep.png", "other.png"}
        assert not {e.image.name for e in extra} & files
    finally:
        migrate(latest())  # the schema the other tests of the session use
