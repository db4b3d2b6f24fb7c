"""Rebuilding shard indexes from the embedding table (the source of truth).

The log position is read before the table, so every update the build may have
missed is in the log after that position and is replayed by the replicas when
they swap to the build: nothing is lost across a rebuild.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import redis
from django.conf import settings

from catalog.models import Embedding
from catalog.redis_clients import redis_client
from workers.encoding.registry import published_model
from workers.index.artifacts import ArtifactStore
from workers.index.build_pointer import BuildPointer, build_requested_key, publish_build
from workers.index.bulk_build import build_bulk
from workers.index.log import UpdateLog, shard_for_product
from workers.index.membership import MemberState, beat, leave
from workers.index.shard import Shard
from workers.index.spec import choose_spec
from workers.index.types import VectorAttrs

logger = logging.getLogger(__name__)
Batch = tuple[np.ndarray, np.ndarray, VectorAttrs]


def embedding_batches(
    shard: int,
    model: str,
    dim: int,
    *,
    batch_size: int = 4096,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Batch]:
    """The shard's stored vectors of active products, in batches (never all in memory)."""
    rows = (
        Embedding.objects.filter(model=model, dim=dim, image__product__is_active=True)
        .order_by("image_id")
        .values_list(
            "image_id",
            "image__product_id",
            "image__product__category_id",
            "image__product__price",
            "image__product__in_stock",
            "vector",
        )
        .iterator(chunk_size=batch_size)
    )
    n_shards = settings.SEARCH_SHARDS
    buffer: list[tuple] = []
    for row in rows:
        if progress:
            progress(1)
        if shard_for_product(row[1], n_shards) == shard:
            buffer.append(row)
            if len(buffer) >= batch_size:
                yield _batch(buffer, dim)
                buffer = []
    if buffer:
        yield _batch(buffer, dim)


def _batch(rows: list[tuple], dim: int) -> Batch:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.frombuffer(b"".join(bytes(r[5]) for r in rows), dtype="<f4").reshape(-1, dim)
    attrs = VectorAttrs.build(
        product_ids=[r[1] for r in rows],
        category_ids=[r[2] if r[2] is not None else -1 for r in rows],
        prices=[float(r[3]) for r in rows],
        in_stock=[r[4] for r in rows],
    )
    return ids, np.ascontiguousarray(vectors, dtype=np.float32), attrs


def shard_vector_count(
    shard: int, model: str, dim: int, progress: Callable[[int], None] | None = None
) -> int:
    return sum(len(b[0]) for b in embedding_batches(shard, model, dim, progress=progress))


def build_shard(
    shard: int, *, spec: str | None = None, progress: Callable[[int], None] | None = None
) -> dict[str, object]:
    """Build, tune and publish one shard's index; its replicas swap to it by themselves."""
    client = redis_client()
    published = published_model(client)
    if published is None:
        raise RuntimeError("no encode worker has published its model yet")
    model, dim = published
    log = UpdateLog(client, shard, model, dim)
    position = log.last_id()
    builder = _BuildMembership(client, shard, position)
    builder.beat()  # the log is kept from `position` until the build is in the store
    try:
        count = shard_vector_count(shard, model, dim, lambda _n: builder.beat_now_and_then())
        chosen = choose_spec(
            max(count, 1), dim, spec or settings.INDEX_SPEC, settings.WORKER_CONFIG.index
        )
        # unique even for two builds in one second: replicas swap when the id changes
        build_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{chosen.factory.replace(',', '_')}"
        build_id += f"-{secrets.token_hex(3)}"

        def tick(n: int) -> None:
            builder.beat_now_and_then()
            if progress:
                progress(n)

        with tempfile.TemporaryDirectory(dir=_scratch_dir()) as scratch:
            work_dir = Path(scratch) / "work"
            if count:
                built = build_bulk(
                    embedding_batches(shard, model, dim, progress=tick),
                    dim,
                    model,
                    chosen,
                    expected_count=count,
                    log_position=position,
                    work_dir=work_dir,
                    train_threads=settings.WORKER_CONFIG.index.train_threads,
                    add_threads=settings.WORKER_CONFIG.index.train_threads,
                    n_shards=settings.SEARCH_SHARDS,  # tuned for the merged answer's recall
                )
                index = built.shard
                facts = {
                    "train_s": round(built.train_seconds, 2),
                    "add_s": round(built.add_seconds, 2),
                    "tune_s": round(built.tune_seconds, 2),
                    "tune": {
                        k: v
                        for k, v in built.tune.items()
                        if isinstance(v, int | float | str | dict)
                    },
                }
            else:  # an empty shard is a state too: replicas waiting for a build need one
                index, facts = Shard(dim, model, chosen, work_dir=work_dir), {}
            folder = index.snapshot(Path(scratch) / "out", position)
            artifact = index_store().publish(
                shard,
                folder,
                kind="build",
                build_id=build_id,
                log_position=position,
                meta={"vectors": count, "spec": chosen.factory},
            )
        publish_build(
            client,
            shard,
            BuildPointer(build_id, artifact.artifact_id, artifact.uri, position, chosen.factory),
        )
        client.delete(build_requested_key(shard))  # a replica may ask again from now on
    finally:
        builder.leave()
    logger.info("shard %d: published build %s (%d vectors)", shard, build_id, count)
    return {
        "shard": shard,
        "build_id": build_id,
        "vectors": count,
        "spec": chosen.factory,
        "log_position": position,
        "uri": artifact.uri,
        **facts,
    }


def index_store() -> ArtifactStore:
    return ArtifactStore(settings.INDEX_STORE_URL)


def _scratch_dir() -> Path:
    path = Path(settings.INDEX_DIR) / "builds"
    path.mkdir(parents=True, exist_ok=True)
    return path


class _BuildMembership:
    """A build in progress as a member of its shard: it holds the log's trim floor at the
    position it covers, and lets go by itself (TTL) if the build process dies."""

    def __init__(self, client: redis.Redis, shard: int, position: str) -> None:
        self.client = client
        self.state = MemberState(
            name=f"build:{socket.gethostname()}:{os.getpid()}",
            shard=shard,
            host=socket.gethostname(),
            pid=os.getpid(),
            role="build",
            ready=False,
            reason="building",
            position=position,
            vectors=0,
            build_id="",
            updated=time.time(),
        )
        self.ttl_s = 600.0  # a beat between rows read; a slow database must not drop it
        self.next_beat = 0.0

    def beat(self) -> None:
        beat(self.client, replace(self.state, updated=time.time()), self.ttl_s)
        self.next_beat = time.monotonic() + self.ttl_s / 4

    def beat_now_and_then(self) -> None:
        if time.monotonic() >= self.next_beat:
            self.beat()

    def leave(self) -> None:
        leave(self.client, self.state.shard, self.state.name)
