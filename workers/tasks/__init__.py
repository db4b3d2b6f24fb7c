"""Celery tasks. Each module serves one queue; tasks take ids and delegate to services."""

from workers.tasks import encoding, maintenance, shards

__all__ = ["encoding", "maintenance", "shards"]
