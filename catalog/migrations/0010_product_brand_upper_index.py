"""An index on UPPER(brand): the brand filter of the products API and of text search,
any case, without reading the whole product table."""

from django.db import migrations, models
from django.db.models.functions import Upper


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0009_product_search_document"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="product",
            index=models.Index(Upper("brand"), name="catalog_product_brand_upper"),
        ),
    ]
