"""The lexical index: a GIN index over the products' text on PostgreSQL (replaced by a
stored column in 0009), an FTS5 table kept by triggers on SQLite (catalog/lexical/)."""

from django.db import migrations

INDEX = "catalog_product_text_gin"
EXPRESSION = (
    "setweight(to_tsvector('english'::regconfig, COALESCE(sku, '')), 'A')"
    " || setweight(to_tsvector('english'::regconfig, COALESCE(title, '')), 'A')"
    " || setweight(to_tsvector('english'::regconfig, COALESCE(brand, '')), 'B')"
    " || setweight(to_tsvector('english'::regconfig, COALESCE(description, '')), 'C')"
)


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"CREATE INDEX {INDEX} ON catalog_product USING gin (({EXPRESSION}))")
    elif schema_editor.connection.vendor == "sqlite":
        from catalog.lexical import sqlite_fts5

        sqlite_fts5.install(schema_editor.connection)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")
    elif schema_editor.connection.vendor == "sqlite":
        from catalog.lexical import sqlite_fts5

        sqlite_fts5.uninstall(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0006_embedding_cover_index")]

    operations = [migrations.RunPython(forward, backward)]
