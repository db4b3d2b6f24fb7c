"""When an image row was last saved: how long its stored file has had to reach shared storage.

Existing rows take their creation time (their files were stored then), not the time of
this migration.
"""

from django.db import migrations, models
from django.db.models import F


def from_created_at(apps, schema_editor):
    ProductImage = apps.get_model("catalog", "ProductImage")
    ProductImage.objects.update(updated_at=F("created_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0003_unique_upload_per_product"),
    ]

    operations = [
        migrations.AddField(
            model_name="productimage",
            name="updated_at",
            field=models.DateTimeField(auto_now=True),
        ),
        migrations.RunPython(from_created_at, migrations.RunPython.noop),
    ]
