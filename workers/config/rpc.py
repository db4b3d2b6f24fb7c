"""The query RPC's deadlines and Redis timeouts, and the bounds on what a message carries."""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.config.encoding import ImageLimits
from workers.config.parse import env

# What a request carries besides its image (ids, reply key, deadline, msgpack framing).
IMAGE_ENVELOPE_BYTES = 64 * 1024
_MIN_MESSAGE_BYTES = 16 * 1024 * 1024  # a search of 1024 queries of 4096 floats


@dataclass(frozen=True)
class RpcConfig:
    """Deadlines of the callers (a late shard makes the answer partial), the Redis client's
    timeouts (blocking waits are cut to fit inside the socket's), and the slow-batch log."""

    search_timeout_s: float = field(default=0.25, metadata=env("SEARCH_TIMEOUT_S"))
    encode_timeout_s: float = field(default=2.0, metadata=env("ENCODE_TIMEOUT_S"))
    socket_timeout_s: float = field(default=5.0, metadata=env("RPC_SOCKET_TIMEOUT_S"))
    connect_timeout_s: float = field(default=0.25, metadata=env("RPC_CONNECT_TIMEOUT_S"))
    slow_log_ms: float = field(default=250.0, metadata=env("RPC_SLOW_LOG_MS"))

    def __post_init__(self) -> None:
        timeouts = (
            self.search_timeout_s,
            self.encode_timeout_s,
            self.socket_timeout_s,
            self.connect_timeout_s,
        )
        if min(timeouts) <= 0 or self.slow_log_ms < 0:
            raise ValueError("timeouts must be more than 0 seconds, the slow log 0 ms or more")


@dataclass(frozen=True)
class ProtocolLimits:
    """Upper bounds on what a message may carry; anything larger is malformed.

    The image cap is IMAGE_MAX_BYTES (the cap the web process checks uploads against, so
    an image it accepts is never refused here), never a separate RPC setting.
    """

    max_image_bytes: int = ImageLimits.max_bytes
    # -1: room for the largest image (at least 16 MiB)
    max_message_bytes: int = field(default=-1, metadata=env("RPC_MAX_MESSAGE_BYTES"))
    max_queries: int = field(default=1024, metadata=env("RPC_MAX_QUERIES"))
    max_dim: int = field(default=4096, metadata=env("RPC_MAX_DIM"))
    max_k: int = field(default=1000, metadata=env("RPC_MAX_K"))
    max_text_chars: int = field(default=4096, metadata=env("RPC_MAX_TEXT_CHARS"))
    max_id_chars: int = field(default=128, metadata=env("RPC_MAX_ID_CHARS"))

    def __post_init__(self) -> None:
        if self.max_message_bytes == -1:
            least = max(_MIN_MESSAGE_BYTES, self.max_image_bytes + IMAGE_ENVELOPE_BYTES)
            object.__setattr__(self, "max_message_bytes", least)
        if self.max_message_bytes < self.max_image_bytes + IMAGE_ENVELOPE_BYTES:
            raise ValueError(
                f"max_message_bytes={self.max_message_bytes} leaves no room for an image of "
                f"max_image_bytes={self.max_image_bytes} (IMAGE_MAX_BYTES)"
            )
        counts = (
            self.max_queries,
            self.max_dim,
            self.max_k,
            self.max_text_chars,
            self.max_id_chars,
        )
        if min(counts) < 1:
            raise ValueError("message limits must be at least 1")
