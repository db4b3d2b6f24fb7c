"""pgvector for the pgvector bench: a throwaway PostgreSQL cluster (initdb in a temporary
folder, a free port on loopback; the machine's own server is never touched), the catalog of
bench/vector_set.py in one table under an HNSW index, ef_search tuned by the service's own
tuner rule, and a closed-loop load process of prepared SQL queries over loopback.

    python bench/pg_path.py load --dsn DSN --queries q.npy --ef 40 -c 8 -s 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.vector_set import DIM, VectorSet  # noqa: E402
from workers.index.spec import SearchParams  # noqa: E402
from workers.index.tune.recall import Measured, query_hits, recall_spread  # noqa: E402
from workers.index.tune.sweep import EF_STEPS, KnobRange, cheapest_passing  # noqa: E402
from workers.redis_process import free_port  # noqa: E402

QUERY = "SELECT id FROM items ORDER BY embedding <#> %b LIMIT %s"  # <#>: negative inner product


def pg_config(flag: str) -> str:
    return subprocess.run(
        ["pg_config", flag], check=True, capture_output=True, text=True
    ).stdout.strip()


def pgvector_installed() -> str | None:
    """Why pgvector cannot be benched here, or None when it can."""
    if shutil.which("pg_config") is None:
        return "no pg_config on PATH (apt-get install postgresql-server-dev-15)"
    control = Path(pg_config("--sharedir")) / "extension" / "vector.control"
    if not control.exists():
        return f"pgvector is not installed ({control} missing): run bench/pgvector_build.sh"
    try:
        import pgvector.psycopg  # noqa: F401
    except ImportError:
        return "the pgvector Python package is missing (pip install -e '.[dev]')"
    return None


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its binaries as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class ThrowawayPostgres:
    """A private cluster in a temporary folder of its own (the postgres user must reach
    it) on a free loopback port."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pgvector-pg-")))
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def start(self) -> ThrowawayPostgres:
        bindir = Path(pg_config("--bindir"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        data = self.root / "data"
        subprocess.run(
            _as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                          "--auth=trust", "-E", "UTF8", "--no-sync"]),
            check=True, capture_output=True,
        )  # fmt: skip
        self.port = free_port()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "shared_buffers": "512MB",
            "maintenance_work_mem": "1GB",
            "max_connections": "40",
            "fsync": "off",  # a throwaway copy: loading speed only, searches never write
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        args = [a for key, value in settings.items() for a in ("-c", f"{key}={value}")]
        log = (self.root / "postgres.log").open("w")
        self.proc = subprocess.Popen(
            _as_postgres([str(bindir / "postgres"), "-D", str(data), *args]),
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 60.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"postgres died; see {self.root / 'postgres.log'}")
            try:
                psycopg.connect(self.dsn, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.2)
        raise RuntimeError(f"postgres not ready; see {self.root / 'postgres.log'}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: smart shutdown, our clients are gone
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)


def connect(dsn: str, ef_search: int | None = None):
    import psycopg
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(dsn, autocommit=True)
    if ef_search is None:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    if ef_search is not None:
        conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")
    return conn


def load(dsn: str, data: VectorSet, m: int = 16, ef_construction: int = 64) -> dict[str, float]:
    """The catalog into `items`, a product table with its embedding (binary COPY), under an
    HNSW index; seconds each step took."""
    conn = connect(dsn)
    conn.execute(
        "CREATE TABLE items (id bigint PRIMARY KEY, title text NOT NULL, price numeric(10, 2), "
        f"in_stock boolean NOT NULL, category_id integer NOT NULL, embedding vector({DIM}))"
    )
    attrs = data.attrs()
    rows = zip(
        data.ids.tolist(),
        attrs.prices.tolist(),
        attrs.in_stock.tolist(),
        attrs.category_ids.tolist(),
        data.vectors,
        strict=True,
    )
    started = time.perf_counter()
    copy_sql = "COPY items (id, title, price, in_stock, category_id, embedding) FROM STDIN BINARY"
    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
        copy.set_types(["int8", "text", "numeric", "bool", "int4", "vector"])
        for pid, price, stock, category, vector in rows:
            copy.write_row(
                (pid, f"Synthetic product {pid}", Decimal(f"{price:.2f}"), stock, category, vector)
            )
    copied = time.perf_counter()
    conn.execute(
        f"CREATE INDEX ON items USING hnsw (embedding vector_ip_ops) "
        f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
    )
    conn.execute("VACUUM ANALYZE items")
    indexed = time.perf_counter()
    conn.close()
    return {"copy_s": copied - started, "index_s": indexed - copied}


def search_all(dsn: str, queries: np.ndarray, ef: int, k: int = 10) -> list[np.ndarray]:
    """Product ids of each query's top k, one prepared statement per query."""
    with connect(dsn, ef) as conn:
        return [
            np.array([row[0] for row in conn.execute(QUERY, (q, k), prepare=True)], dtype=np.int64)
            for q in queries
        ]


def tune_ef(dsn: str, data: VectorSet, target: float, k: int = 10) -> tuple[int, list[dict]]:
    """The smallest ef_search passing `target` on the tuning queries by the same rule as the
    shards' tuner (powers of two, then bisection; margin = the measured spread)."""
    tried: list[Measured] = []

    def run(params: SearchParams) -> Measured:
        started = time.perf_counter()
        found = search_all(dsn, data.tune_queries, int(params.ef_search), k)
        seconds = (time.perf_counter() - started) / len(found)
        hits, expected = query_hits(np.array(found), data.tune_truth, None, k)
        got = Measured(params, hits.sum() / expected.sum(), recall_spread(hits, expected), seconds)
        tried.append(got)
        return got

    steps = tuple(ef for ef in EF_STEPS if ef > k)
    chosen = cheapest_passing(
        KnobRange(SearchParams(), "ef_search", steps, lowest=k), run, target, None
    )
    best = chosen or max(tried, key=lambda m: m.recall)
    return int(best.params.ef_search), [t.row() for t in tried]


def pg_caller(dsn: str, queries: np.ndarray, k: int, ef: int):
    """closed_loop.run's factory: one connection per thread, a prepared statement each."""

    def make():
        conn = connect(dsn, ef)

        def call(i: int) -> tuple[int, bool, float]:
            conn.execute(QUERY, (queries[i % len(queries)], k), prepare=True).fetchall()
            return 200, False, float("nan")

        return call

    return make


def main() -> None:
    from bench.closed_loop import run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["load"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--ef", type=int, required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-s", "--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    queries = np.load(args.queries, allow_pickle=False).astype(np.float32)
    make = pg_caller(args.dsn, queries, args.k, args.ef)
    print(json.dumps(run(make, args.concurrency, args.seconds, args.warmup)))


if __name__ == "__main__":
    main()
