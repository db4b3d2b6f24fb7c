"""What every worker process sets up for itself: logs, its metrics port, malloc."""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.config.parse import env

LOG_FORMATS = ("plain", "json")


@dataclass(frozen=True)
class ObservabilityConfig:
    """Log lines (plain text or one JSON object a line) and the worker metrics endpoint."""

    log_format: str = field(default="plain", metadata=env("LOG_FORMAT"))
    log_level: str = field(default="INFO", metadata=env("LOG_LEVEL"))
    # A Celery worker serves /metrics and /ready on this port; 0: none.
    metrics_port: int = field(default=0, metadata=env("WORKER_METRICS_PORT"))
    metrics_addr: str = field(default="127.0.0.1", metadata=env("WORKER_METRICS_ADDR"))
    # How often a shard replica refreshes its gauges (size, log lag, ...).
    shard_metrics_every_s: float = field(default=5.0, metadata=env("SHARD_METRICS_EVERY_S"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "log_format", self.log_format.lower())
        object.__setattr__(self, "log_level", self.log_level.upper())
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"LOG_FORMAT must be 'json' or 'plain', not {self.log_format!r}")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError(
                f"WORKER_METRICS_PORT must be a TCP port or 0, not {self.metrics_port}"
            )
        if self.shard_metrics_every_s <= 0:
            raise ValueError("SHARD_METRICS_EVERY_S must be more than 0")


@dataclass(frozen=True)
class MemoryConfig:
    """glibc malloc thresholds (MB) of processes that search: freed blocks up to these sizes
    are kept for reuse instead of being unmapped (workers/malloc.py)."""

    keep_mmap_mb: int = field(default=32, metadata=env("MALLOC_KEEP_MMAP_MB"))
    keep_trim_mb: int = field(default=256, metadata=env("MALLOC_KEEP_TRIM_MB"))

    def __post_init__(self) -> None:
        if min(self.keep_mmap_mb, self.keep_trim_mb) < 1:
            raise ValueError("malloc thresholds must be at least 1 MB")
