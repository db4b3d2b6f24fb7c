"""The synthetic catalog served as the in-process benches need it: built once into a work
folder (bench/catalog_build.py), a private redis-server with the model
published, and one ShardService process per shard, ready to answer."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis

from bench.catalog_build import prepare
from bench.search_data import DIM, MODEL
from bench.search_procs import ShardProcs
from workers.encoding.registry import publish_model
from workers.redis_process import RedisProcess
from workers.rpc.client import SearchClient
from workers.rpc.connection import connect


@dataclass(frozen=True)
class Served:
    work: Path
    builds: list[dict]  # each shard's build report (spec, params, ...)
    redis: RedisProcess
    client: redis.Redis
    shards: ShardProcs
    search: SearchClient  # asks every shard


@contextlib.contextmanager
def served(
    work: Path | None,
    n: int,
    n_shards: int,
    spec: str,
    queries: tuple[np.ndarray, np.ndarray],
    *,
    batch_cap: int = 64,
    prefix: str = "bench-",
    database_url: str | None = None,
) -> Iterator[Served]:
    """`n` products in `n_shards` shards of `spec`, the catalog database (SQLite in the
    work folder, or `database_url`) with stored vectors for the (ids, vectors) in
    `queries`; all stopped on exit. Without `work` the build goes to a scratch folder,
    removed on exit; with it, a build there is reused."""
    scratch = None
    if work is None:
        work = scratch = Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    build = argparse.Namespace(n=n, shards=n_shards, spec=spec, database_url=database_url)
    builds = prepare(build, work, *queries)
    redis_dir = Path(tempfile.mkdtemp(prefix="redis-", dir=work))
    redis_proc = RedisProcess(redis_dir)
    redis_proc.start()
    shards: ShardProcs | None = None
    try:
        client = connect(redis_proc.url)
        publish_model(client, MODEL, DIM, random_weights=True)
        logs = work / "logs"
        logs.mkdir(exist_ok=True)
        shards = ShardProcs(redis_proc.url, work / "index", n_shards, batch_cap, logs)
        search = SearchClient(client, n_shards)
        shards.start().wait_ready(search, DIM)
        yield Served(work, builds, redis_proc, client, shards, search)
    finally:
        if shards is not None:
            shards.stop()
        redis_proc.stop()
        shutil.rmtree(redis_dir, ignore_errors=True)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
