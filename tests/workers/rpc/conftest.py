"""RPC test fixtures: a tiny exact FAISS shard function and RPC servers running in threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import faiss
import numpy as np
import pytest
import redis

from workers.index.types import SearchFilter, SearchResult
from workers.rpc.connection import connect
from workers.rpc.server import Handler, RpcServer

DIM = 32


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True))


@dataclass
class FlatShard:
    """A real exact shard for the tests: faiss.IndexFlatIP over one image per product.

    Stands in for workers.index.shard (built elsewhere); it honours category filters with
    a FAISS ID selector and pads like the real shard (id -1, score -inf). `calls` counts
    search calls, to observe batching.
    """

    vectors: np.ndarray
    product_ids: np.ndarray
    categories: np.ndarray
    calls: int = 0

    def __post_init__(self) -> None:
        self.index = faiss.IndexFlatIP(self.vectors.shape[1])
        self.index.add(self.vectors)

    def search(self, queries: np.ndarray, k: int, filters: SearchFilter) -> SearchResult:
        self.calls += 1
        params = None
        if filters.category_ids is not None:
            allowed = np.flatnonzero(np.isin(self.categories, sorted(filters.category_ids)))
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed.astype(np.int64)))
        scores, rows = self.index.search(np.ascontiguousarray(queries), k, params=params)
        found = rows >= 0
        product_ids = np.where(found, self.product_ids[np.maximum(rows, 0)], -1).astype(np.int64)
        return SearchResult(
            product_ids=product_ids,
            image_ids=np.where(found, product_ids * 10, -1).astype(np.int64),
            scores=np.where(found, scores, -np.inf).astype(np.float32),
        )


def make_shards(n_shards: int, n: int = 3000, seed: int = 0) -> list[FlatShard]:
    """Products 0..n-1 spread over shards by id modulo n_shards, categories id % 5."""
    vectors = unit_vectors(n, seed=seed)
    ids = np.arange(n, dtype=np.int64)
    return [
        FlatShard(
            vectors[ids % n_shards == s], ids[ids % n_shards == s], ids[ids % n_shards == s] % 5
        )
        for s in range(n_shards)
    ]


class Servers:
    """Starts RpcServer threads on their own Redis connections; stops them all at teardown."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.running: list[tuple[RpcServer, threading.Event, threading.Thread]] = []

    def start(self, queue_key: str, handler: Handler, **kwargs: object) -> RpcServer:
        kwargs.setdefault("block_s", 0.1)
        kwargs.setdefault("backoff_s", (0.02, 0.2))
        server = RpcServer(connect(self.url), queue_key, handler, **kwargs)  # type: ignore[arg-type]
        stop = threading.Event()
        thread = threading.Thread(target=server.serve_forever, args=(stop,), daemon=True)
        thread.start()
        self.running.append((server, stop, thread))
        return server

    def stop(self, server: RpcServer) -> None:
        for entry in self.running:
            if entry[0] is server:
                entry[1].set()
                entry[2].join(timeout=10)
                assert not entry[2].is_alive(), "server did not stop"
                self.running.remove(entry)
                server.client.close()
                return
        raise KeyError(server)

    def stop_all(self) -> None:
        for server, *_ in list(self.running):
            self.stop(server)


@pytest.fixture
def servers(redis_url: str) -> Iterator[Servers]:
    running = Servers(redis_url)
    yield running
    running.stop_all()


@pytest.fixture
def rpc_redis(redis_url: str) -> Iterator[redis.Redis]:
    """A client configured like the web process's (fail fast, one reconnect retry)."""
    client = connect(redis_url, socket_timeout=5.0)
    yield client
    client.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until `predicate()` holds (used to sequence threads, never to assert speed)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)
