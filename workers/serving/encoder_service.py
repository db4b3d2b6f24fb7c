"""The query encoder served over the Redis RPC from an encode worker (text and image queries)."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from workers.config import WorkerConfig
from workers.encoding.registry import publish_model
from workers.rpc.connection import connect
from workers.rpc.encode import ENCODE_QUEUE_KEY, Encoder, make_encode_handler
from workers.rpc.server import RpcServer

logger = logging.getLogger(__name__)


class ServedEncoder(Encoder, Protocol):
    """An encoder that can say which model it runs (published for the shards to check)."""

    @property
    def model_name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def random_weights(self) -> bool: ...


class EncoderService:
    def __init__(
        self,
        redis_url: str,
        encoder: ServedEncoder,
        *,
        batch_cap: int = 32,
        config: WorkerConfig | None = None,
    ) -> None:
        config = config or WorkerConfig()
        self.client = connect(
            redis_url, socket_timeout=10.0, connect_timeout=config.rpc.connect_timeout_s
        )
        self.encoder = encoder
        self.server = RpcServer(
            self.client,
            ENCODE_QUEUE_KEY,
            make_encode_handler(encoder),
            batch_cap=batch_cap,
            name="encoder",
            limits=config.protocol,
            slow_log_s=config.rpc.slow_log_ms / 1e3,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        publish_model(
            self.client,
            self.encoder.model_name,
            self.encoder.dim,
            random_weights=self.encoder.random_weights,
        )
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(self._stop,), name="encoder-rpc", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
