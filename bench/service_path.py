"""This service's search path for the pgvector and shard-count benches: the catalog of
bench/vector_set.py built into shards (build_bulk, the default `auto` spec and its tuned
knobs, as a build worker makes them), one ShardService replica process per shard on a
private redis-server, searched through the RPC client (bench/closed_loop.py for load)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.rpc_bench import pct  # noqa: E402
from bench.search_data import shard_of, store_url  # noqa: E402
from bench.search_procs import ShardProcs  # noqa: E402
from bench.vector_set import DIM, MODEL, VectorSet  # noqa: E402
from workers.encoding.registry import publish_model  # noqa: E402
from workers.index.artifacts import ArtifactStore  # noqa: E402
from workers.index.bulk_build import build_bulk  # noqa: E402
from workers.index.log import START  # noqa: E402
from workers.index.spec import describe_knobs  # noqa: E402
from workers.redis_process import RedisProcess  # noqa: E402
from workers.rpc.client import SearchClient  # noqa: E402
from workers.rpc.connection import connect  # noqa: E402

HERE = Path(__file__).resolve().parent


def build_shards(data: VectorSet, n_shards: int, index_dir: Path, spec: str = "auto") -> list[dict]:
    """Build, tune and publish every shard where the replicas load from; what each build did."""
    facts = []
    placed = shard_of(data.ids, n_shards)
    for shard in range(n_shards):
        rows = np.flatnonzero(placed == shard)
        started = time.perf_counter()
        built = build_bulk(
            [(data.ids[rows], data.vectors[rows], data.attrs(rows))],
            DIM,
            MODEL,
            spec,
            expected_count=len(rows),
            work_dir=index_dir / "builds" / f"shard-{shard}" / "work",
            add_threads=2,
            n_shards=n_shards,
        )
        folder = built.shard.snapshot(index_dir / "builds" / f"shard-{shard}" / "out", START)
        ArtifactStore(store_url(index_dir)).publish(
            shard, folder, kind="build", build_id="bench", log_position=START, meta={}
        )
        facts.append(
            {
                "shard": shard,
                "vectors": built.n_vectors,
                "spec": built.spec.factory,
                "knobs": describe_knobs(built.spec.factory, built.shard.params.to_dict()),
                "tune_recall": built.tune.get("recall_at_k"),
                "tune_spread": built.tune.get("recall_spread"),
                "tuned_for_shards": built.tune.get("n_shards"),
                "build_s": round(time.perf_counter() - started, 1),
            }
        )
    return facts


@dataclass
class Service:
    """A private redis-server and one replica process per shard of `index_dir`."""

    index_dir: Path
    n_shards: int
    log_dir: Path
    redis: RedisProcess | None = None
    shards: ShardProcs | None = None
    client: SearchClient | None = None
    load_s: float = 0.0
    extra: dict = field(default_factory=dict)

    def start(self) -> Service:
        self.redis = RedisProcess(Path(tempfile.mkdtemp(prefix="redis-", dir=self.log_dir)))
        self.redis.start()
        conn = connect(self.redis.url)
        publish_model(conn, MODEL, DIM, random_weights=True)  # synthetic vectors: no encoder
        self.client = SearchClient(conn, self.n_shards)
        self.shards = ShardProcs(self.redis.url, self.index_dir, self.n_shards, 64, self.log_dir)
        self.load_s = self.shards.start().wait_ready(self.client, DIM)
        return self

    def stop(self) -> None:
        if self.shards is not None:
            self.shards.stop()
        if self.redis is not None:
            self.redis.stop()

    def recall(self, data: VectorSet, k: int = 10) -> float:
        """recall@k of the evaluation queries, one request each, against exact truth."""
        from bench.vector_set import recall

        assert self.client is not None
        found = [self.client.search(q, k, timeout_s=5.0).result.image_ids[0] for q in data.queries]
        return recall(found, data.truth, k)

    def load(self, queries: Path, concurrency: int, seconds: float, warmup: float, k: int = 10):
        """Closed-loop QPS and p50 latency through the RPC client (its own process)."""
        assert self.redis is not None
        return closed_loop(
            [
                str(HERE / "closed_loop.py"), "rpc", "--redis-url", self.redis.url,
                "--shards", str(self.n_shards), "--queries", str(queries), "--k", str(k),
            ],
            concurrency, seconds, warmup,
        )  # fmt: skip


def closed_loop(cmd: list[str], concurrency: int, seconds: float, warmup: float) -> dict:
    """Run a closed_loop-style load process; its QPS, p50 ms and errors."""
    out = subprocess.run(
        [sys.executable, *cmd, "-c", str(concurrency), "-s", str(seconds), "--warmup", str(warmup)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    ms = np.asarray(result["ms"], dtype=np.float64)
    errors = sum(v for key, v in result["status"].items() if key != "200")
    return {
        "qps": result["qps"],
        "p50": pct(ms, 50) if len(ms) else float("nan"),
        "errors": errors + result.get("partial", 0),
    }
