from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Catalog"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from catalog import signals  # noqa: F401  (connects the cache-invalidation receivers)
        from catalog.lexical import reinstall_after_migrate

        post_migrate.connect(reinstall_after_migrate, sender=self)
