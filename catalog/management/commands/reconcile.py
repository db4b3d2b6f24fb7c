"""Compare each shard's contents with the database and repair the differences."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from catalog.services.reconcile import reconcile


class Command(BaseCommand):
    help = "Find ids missing from or extra in each shard; repair them unless --dry-run."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--timeout", type=float, default=120.0)

    def handle(self, *args: object, dry_run: bool, timeout: float, **options: object) -> None:
        diffs = reconcile(repair=not dry_run, timeout=timeout)
        if not diffs:
            self.stdout.write("nothing to reconcile: no encode worker has published a model yet")
        for d in diffs:
            action = "would repair" if dry_run else "repaired"
            self.stdout.write(
                f"shard {d.shard}: live {d.live}, expected {d.expected}; "
                f"{action} {d.missing} missing, {d.extra} extra"
            )
