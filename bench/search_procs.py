"""The server processes of search_bench: shard replicas (ShardService) and gunicorn.

Each shard replica runs in its own process with one FAISS thread, exactly the serving
code a search worker runs in its Celery bootstep, minus Celery. On SIGUSR1 it prints its
RPC counters (served requests, batches, largest batch, handler seconds) as JSON to its log;
on SIGTERM it prints them and exits without the shutdown snapshot, so a reused index
directory stays as it was built.

    python bench/search_procs.py shard --redis-url URL --shard 0 --index-dir D --batch-cap 64
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workers.redis_process import free_port  # noqa: E402
from workers.rpc.client import SearchClient  # noqa: E402
from workers.rpc.errors import NoShardAvailable  # noqa: E402

if TYPE_CHECKING:
    from workers.serving.shard_service import ShardService


def serve_shard(args: argparse.Namespace) -> None:
    from bench.search_data import store_url
    from workers.index.threads import use_search_threads
    from workers.serving.shard_service import ShardService, ShardServiceConfig

    use_search_threads(1)
    service = ShardService(
        ShardServiceConfig(
            redis_url=args.redis_url,
            shard=args.shard,
            index_dir=Path(args.index_dir),
            store_url=store_url(Path(args.index_dir)),
            batch_cap=args.batch_cap,
            model_wait_s=60.0,
        )
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: print_counters(service))
    service.start()
    stop.wait()
    print_counters(service)
    os._exit(0)  # no shutdown snapshot: the bench's index directory is read-only to it


def print_counters(service: ShardService) -> None:
    """The replica's RPC counters as one JSON line on stderr (its log): requests served,
    batches, the largest batch, and the seconds its handler spent, the search as it runs
    in place (read from the vps_rpc_handler_seconds histogram)."""
    from workers.observability.metrics import RPC_HANDLER_SECONDS

    server = service.server
    counters = {"served": 0, "batches": 0, "max_batch": 0, "handler_s": 0.0}
    if server is not None:
        (family,) = RPC_HANDLER_SECONDS.collect()
        counters.update(
            served=server.served,
            batches=server.batches,
            max_batch=server.max_batch_size,
            handler_s=sum(
                sample.value
                for sample in family.samples
                if sample.name.endswith("_sum") and sample.labels["server"] == server.name
            ),
        )
    print(json.dumps(counters), file=sys.stderr, flush=True)


@dataclass
class ShardProcs:
    """One replica process per shard, all on the same Redis and index directory."""

    redis_url: str
    index_dir: Path
    n_shards: int
    batch_cap: int
    log_dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self) -> ShardProcs:
        for shard in range(self.n_shards):
            log = self._log(shard).open("w")
            cmd = [
                sys.executable, __file__, "shard",
                "--redis-url", self.redis_url,
                "--shard", str(shard),
                "--index-dir", str(self.index_dir),
                "--batch-cap", str(self.batch_cap),
            ]  # fmt: skip
            env = {**os.environ, "OMP_NUM_THREADS": "1", "FAISS_SEARCH_THREADS": "1"}
            self.procs.append(subprocess.Popen(cmd, stderr=log, env=env))
        return self

    def wait_ready(self, client: SearchClient, dim: int, timeout: float = 600.0) -> float:
        """Block until every shard answers; returns the seconds it took."""
        started = time.monotonic()
        probe = np.full(dim, dim**-0.5, dtype=np.float32)
        while time.monotonic() - started < timeout:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a shard process died; logs in {self.log_dir}")
            try:
                if not client.search(probe, 1, timeout_s=1.0).partial:
                    return time.monotonic() - started
            except NoShardAvailable:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"shards not ready after {timeout:.0f}s; logs in {self.log_dir}")

    def _log(self, shard: int) -> Path:
        return self.log_dir / f"shard{shard}-cap{self.batch_cap}.log"

    def counters(self, timeout: float = 10.0) -> list[dict]:
        """Each replica's counters now (see `print_counters`), asked for by SIGUSR1."""
        logs = [self._log(shard) for shard in range(self.n_shards)]
        before = [len(_counter_lines(log)) for log in logs]
        for proc in self.procs:
            proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while True:
            lines = [_counter_lines(log) for log in logs]
            if all(len(ln) > n for ln, n in zip(lines, before, strict=True)):
                return [json.loads(ln[-1]) for ln in lines]
            if time.monotonic() > deadline:
                raise RuntimeError(f"shards did not print their counters; logs in {self.log_dir}")
            time.sleep(0.01)

    def stop(self) -> list[dict]:
        """Terminate the replicas; their RPC counters, one dict per shard."""
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        counters = []
        for shard, proc in enumerate(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            lines = _counter_lines(self._log(shard))
            counters.append(json.loads(lines[-1]) if lines else {})
        self.procs.clear()
        return counters


def _counter_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("{")]


@dataclass
class WebProcess:
    """gunicorn serving searchsite with the bench's environment."""

    env: dict[str, str]
    log_dir: Path
    workers: int = 2
    threads: int = 8
    log_name: str = "web.log"
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WebProcess:
        self.port = free_port()
        log = (self.log_dir / self.log_name).open("w")
        cmd = [
            sys.executable, "-m", "gunicorn", "searchsite.wsgi",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.workers),
            "--threads", str(self.threads),
            "--worker-class", "gthread",
            "--backlog", "256",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=log)
        return self

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the gunicorn worker processes."""
        if self.proc is None:
            return 0.0
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        total = 0
        for pid in children.read_text().split():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # a worker that just exited
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
        return total / os.sysconf("SC_CLK_TCK")

    def wait_ready(self, path: str, timeout: float = 120.0) -> None:
        """Until `path` answers 200 (every worker imported Django and reached Redis)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn died; see {self.log_dir / self.log_name}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=5) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise RuntimeError(f"web not ready: {last}; see {self.log_dir / self.log_name}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def web_env(
    data_dir: Path, redis_url: str, n_shards: int, database_url: str | None = None
) -> dict[str, str]:
    """Production-like settings (DEBUG off) on loopback, throttles out of the way; the
    catalog in SQLite under `data_dir` unless `database_url` names another."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "searchsite.settings",
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + "x" * 60,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_HSTS_SECONDS": "0",
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url or f"sqlite:///{data_dir / 'db.sqlite3'}",
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
        "SEARCH_SHARDS": str(n_shards),
        "THROTTLE_ANON": "1000000000/minute",
        "THROTTLE_USER": "1000000000/minute",
        "THROTTLE_SEARCH": "1000000000/minute",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["shard"])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--shard", type=int, required=True)
    parser.add_argument("--index-dir", required=True)
    parser.add_argument("--batch-cap", type=int, default=64)
    serve_shard(parser.parse_args())


if __name__ == "__main__":
    main()
