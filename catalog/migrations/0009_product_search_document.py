"""PostgreSQL: the products' weighted tsvector stored in a generated column under a GIN
index, in place of 0007's GIN index on the expression, which made every ranked hit parse
its text again (catalog/lexical/postgres.py). Adding the column rewrites the product
table. SQLite keeps its FTS5 table: nothing to do there."""

from importlib import import_module

from django.db import migrations

text_index = import_module("catalog.migrations.0007_product_text_index")

COLUMN = "search_document"
INDEX = "catalog_product_document_gin"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {text_index.INDEX}")
    # The same weighted document as 0007's index: ts_rank's A > B > C weights
    schema_editor.execute(
        f"ALTER TABLE catalog_product ADD COLUMN {COLUMN} tsvector"
        f" GENERATED ALWAYS AS ({text_index.EXPRESSION}) STORED"
    )
    schema_editor.execute(f"CREATE INDEX {INDEX} ON catalog_product USING gin ({COLUMN})")


def backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER TABLE catalog_product DROP COLUMN {COLUMN}")  # and its index
    text_index.forward(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0008_product_sku_upper_index")]

    operations = [migrations.RunPython(forward, backward)]
