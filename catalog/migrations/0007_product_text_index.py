"""The lexical index: a GIN index over the products' text on PostgreSQL, an FTS5 table
kept by triggers on SQLite (catalog/lexical/)."""

from django.db import migrations


def forward(apps, schema_editor):
    from catalog import lexical

    lexical.install(schema_editor, apps.get_model("catalog", "Product"))


def backward(apps, schema_editor):
    from catalog import lexical

    lexical.uninstall(schema_editor, apps.get_model("catalog", "Product"))


class Migration(migrations.Migration):
    dependencies = [("catalog", "0006_embedding_cover_index")]

    operations = [migrations.RunPython(forward, backward)]
