"""Ask every shard's search worker to write a snapshot now."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from workers.queues import shard_queue
from workers.tasks.shards import shard_snapshot


class Command(BaseCommand):
    help = "Write a snapshot of each shard (on its live search worker)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--timeout", type=float, default=120.0)

    def handle(self, *args: object, timeout: float, **options: object) -> None:
        pending = {
            n: shard_snapshot.apply_async(args=[n], queue=shard_queue(n), expires=timeout)
            for n in range(settings.SEARCH_SHARDS)
        }
        for n, result in pending.items():
            try:
                self.stdout.write(f"shard {n}: {result.get(timeout=timeout)}")
            except Exception as exc:  # timeout or the worker's error: report and go on
                self.stdout.write(self.style.ERROR(f"shard {n}: {type(exc).__name__}: {exc}"))
