"""When each product entered its index state, for the reconcile report of stuck products.

`updated_at` is no measure of it: queryset updates (how tasks set states) bump no
auto_now field, so a product saved days ago and encoding now looked stuck for days.
Existing rows start from their last save, the best that is known.
"""

import django.utils.timezone
from django.db import migrations, models
from django.db.models import F


def from_last_save(apps, schema_editor) -> None:
    apps.get_model("catalog", "Product").objects.update(index_state_at=F("updated_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0004_image_updated_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="product",
            name="index_state_at",
            field=models.DateTimeField(
                default=django.utils.timezone.now, help_text="When index_state was last set"
            ),
        ),
        migrations.RunPython(from_last_save, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="product",
            index=models.Index(
                fields=["index_state", "index_state_at"], name="catalog_pro_index_s_e508d8_idx"
            ),
        ),
    ]
