"""One stored upload per product and content hash.

Before the constraint, uploading the same bytes twice stored and encoded them twice:
those extra copies (all but the oldest per product and hash) are deleted here, with
their files. Their vectors leave the shards at the next `manage.py reconcile` (a search
that still finds one shows the product with its remaining images meanwhile).
"""

from django.db import migrations, models
from django.db.models import Count, Min, Q

UPLOADED = ~Q(sha256="") & Q(source_url="")


def drop_duplicate_uploads(apps, schema_editor) -> None:
    ProductImage = apps.get_model("catalog", "ProductImage")
    groups = (
        ProductImage.objects.filter(UPLOADED)
        .values("product_id", "sha256")
        .annotate(n=Count("pk"), keep=Min("pk"))
        .filter(n__gt=1)
    )
    for group in groups.iterator():
        extra = ProductImage.objects.filter(
            UPLOADED, product_id=group["product_id"], sha256=group["sha256"]
        ).exclude(pk=group["keep"])
        kept = ProductImage.objects.get(pk=group["keep"]).image.name
        for image in extra:
            if image.image and image.image.name != kept:
                image.image.storage.delete(image.image.name)
        extra.delete()
    if schema_editor.connection.vendor == "postgresql":
        # Run the deletes' deferred foreign-key checks now: PostgreSQL refuses to build
        # the constraint's index in a transaction with pending trigger events.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0002_recall_measurement"),
    ]

    operations = [
        migrations.RunPython(drop_duplicate_uploads, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="productimage",
            constraint=models.UniqueConstraint(
                condition=models.Q(~models.Q(sha256=""), source_url=""),
                fields=("product", "sha256"),
                name="unique_upload_per_product",
            ),
        ),
    ]
