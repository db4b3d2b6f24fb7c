"""Celery tasks. Each module serves one queue; tasks take ids and delegate to services."""

from workers.tasks import encoding, shards

__all__ = ["encoding", "shards"]
