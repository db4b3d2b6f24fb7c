"""Print every shard's live state, asked of its search worker."""

from __future__ import annotations

from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings
from django.core.management.base import BaseCommand

from workers.queues import shard_queue
from workers.tasks.shards import shard_stats

COLUMNS = ("shard", "vectors", "delta_size", "removed", "spec", "last_applied", "replica")


class Command(BaseCommand):
    help = "Ask each shard's search worker for its counts, index spec and log position."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--timeout", type=float, default=5.0)

    def handle(self, *args: object, timeout: float, **options: object) -> None:
        pending = {
            n: shard_stats.apply_async(args=[n], queue=shard_queue(n), expires=timeout)
            for n in range(settings.SEARCH_SHARDS)
        }
        self.stdout.write("  ".join(f"{c:>12}" for c in COLUMNS))
        for n, result in pending.items():
            try:
                stats = result.get(timeout=timeout)
            except CeleryTimeout:
                self.stdout.write(self.style.ERROR(f"{n:>12}  no search worker answered"))
                continue
            except Exception as exc:  # the worker's error, reported as such
                self.stdout.write(self.style.ERROR(f"{n:>12}  {type(exc).__name__}: {exc}"))
                continue
            self.stdout.write("  ".join(f"{stats.get(c, '-')!s:>12}" for c in COLUMNS))
