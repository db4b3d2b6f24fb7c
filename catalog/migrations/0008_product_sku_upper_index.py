"""An index on UPPER(sku): a SKU typed into the search box is found in any case without
reading the whole product table (catalog/text_search.py)."""

from django.db import migrations, models
from django.db.models.functions import Upper


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0007_product_text_index"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="product",
            index=models.Index(Upper("sku"), name="catalog_product_sku_upper"),
        ),
    ]
