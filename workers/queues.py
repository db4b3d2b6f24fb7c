"""Celery queue names, declared once. Django-free so every process can import them."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    ENCODE = "encode"  # CLIP encoding of catalog images (GPU workers)
    INDEX = "index"  # index training, rebuilds, maintenance
    DEFAULT = "celery"  # anything small that has no better home


def shard_queue(shard: int) -> str:
    """The queue of one shard's search workers (snapshot, compact, swap, stats)."""
    return f"shard.{int(shard)}"
