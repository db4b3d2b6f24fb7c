"""PostgreSQL: the products' weighted tsvector stored in a generated column under a GIN
index, in place of 0007's GIN index on the expression, which made every ranked hit parse
its text again (catalog/lexical/postgres.py). Adding the column rewrites the product
table. SQLite keeps its FTS5 table: nothing to do there."""

from importlib import import_module

from django.db import migrations

text_index = import_module("catalog.migrations.0007_product_text_index")


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from catalog.lexical import postgres

    schema_editor.execute(f"DROP INDEX IF EXISTS {text_index.INDEX}")
    postgres.install(schema_editor, apps.get_model("catalog", "Product"))


def backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from catalog.lexical import postgres

    postgres.uninstall(schema_editor, apps.get_model("catalog", "Product"))
    text_index.forward(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0008_product_sku_upper_index")]

    operations = [migrations.RunPython(forward, backward)]
