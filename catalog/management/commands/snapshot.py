"""Ask one replica of every shard to publish a snapshot to the artifact store now."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from workers.queues import shard_queue
from workers.tasks.shards import shard_snapshot


class Command(BaseCommand):
    help = "Publish a snapshot of each shard to the artifact store (by one live replica)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--timeout", type=float, default=120.0)

    def handle(self, *args: object, timeout: float, **options: object) -> None:
        pending = {
            n: shard_snapshot.apply_async(args=[n], queue=shard_queue(n), expires=timeout)
            for n in range(settings.SEARCH_SHARDS)
        }
        for n, result in pending.items():
            try:
                uri = result.get(timeout=timeout)
                self.stdout.write(f"shard {n}: {uri or 'the store already holds this position'}")
            except Exception as exc:  # timeout or the worker's error: report and go on
                self.stdout.write(self.style.ERROR(f"shard {n}: {type(exc).__name__}: {exc}"))
