"""The worker configuration: every environment variable the worker packages read, in one
frozen value parsed once and passed to the objects that need it.

Django-free, so the engine and the transport never import settings; searchsite/settings.py
builds its worker-facing settings from the same parser, so both sides agree. Each section
is a frozen dataclass whose defaults are the working local defaults, so code and tests can
build one directly; `WorkerConfig.from_env` is the only place that reads the variables.
Not here: variables owned by other programs (glibc's MALLOC_*_, PROMETHEUS_MULTIPROC_DIR,
HF_*), read where those programs expect them; SENTINEL_PASSWORD, a secret the Redis URL
parser reads itself; REDIS_SERVER, the binary the local stack and tests start.
"""

from __future__ import annotations

import functools
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field

from workers.config.encoding import ImageLimits, UrlPolicy
from workers.config.index import IndexConfig, UpkeepPolicy
from workers.config.parse import ConfigError, from_env, variables
from workers.config.process import MemoryConfig, ObservabilityConfig
from workers.config.rpc import ProtocolLimits, RpcConfig

__all__ = [
    "ConfigError",
    "ImageLimits",
    "IndexConfig",
    "MemoryConfig",
    "ObservabilityConfig",
    "ProtocolLimits",
    "RpcConfig",
    "UpkeepPolicy",
    "UrlPolicy",
    "WorkerConfig",
    "worker_config",
]


@dataclass(frozen=True)
class WorkerConfig:
    images: ImageLimits = field(default_factory=ImageLimits)
    urls: UrlPolicy = field(default_factory=UrlPolicy)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    protocol: ProtocolLimits = field(default_factory=ProtocolLimits)
    index: IndexConfig = field(default_factory=IndexConfig)
    upkeep: UpkeepPolicy = field(default_factory=UpkeepPolicy)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerConfig:
        """Every section from `environ` (default: os.environ); ConfigError names the first
        variable whose value cannot be used."""
        environ = os.environ if environ is None else environ
        images = from_env(ImageLimits, environ)
        return cls(
            images=images,
            urls=from_env(UrlPolicy, environ),
            rpc=from_env(RpcConfig, environ),
            protocol=from_env(ProtocolLimits, environ, max_image_bytes=images.max_bytes),
            index=from_env(IndexConfig, environ),
            upkeep=from_env(UpkeepPolicy, environ),
            observability=from_env(ObservabilityConfig, environ),
            memory=from_env(MemoryConfig, environ),
        )

    @staticmethod
    def variables() -> list[str]:
        """Every environment variable the worker configuration reads."""
        sections = typing.get_type_hints(WorkerConfig).values()
        return [name for section in sections for name in variables(section)]


@functools.cache
def worker_config() -> WorkerConfig:
    """This process's configuration, read from the environment on first use.

    For entry points that have no Django settings to hand (gunicorn's and Flower's logging,
    the Celery worker signals) and the index backends' GPU switch, a setting of the host;
    everything else receives its section as an argument.
    """
    return WorkerConfig.from_env()
