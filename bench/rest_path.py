"""The REST side of the pgvector bench: the service's `similar` view (gunicorn over
searchsite, a throwaway SQLite catalog whose rows match the vectors, the shards behind
it) against a plain Django view over pgvector (bench/pgvector_site.py, same gunicorn
workers and threads) and against the same pgvector query inside this project's stack
(bench/pgvector_stack.py), all asked for the 10 products most like a catalog product."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.search_procs import WebProcess, web_env  # noqa: E402
from bench.service_path import closed_loop  # noqa: E402
from bench.vector_set import MODEL, VectorSet  # noqa: E402
from workers.redis_process import free_port  # noqa: E402

HERE = Path(__file__).resolve().parent
WORKERS, THREADS = 2, 8


def catalog_db(work: Path, data: VectorSet, products: np.ndarray, n_shards: int) -> Path:
    """A migrated SQLite catalog of every product, with stored embeddings for `products`."""
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = web_env(data_dir, "redis://127.0.0.1:1/0", n_shards)
    run = {"cwd": ROOT, "env": env, "check": True, "capture_output": True}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], **run)
    np.savez(work / "embeddings.npz", ids=products, vectors=data.vectors[products - 1])
    subprocess.run(
        [sys.executable, str(HERE / "search_db.py"), "--n", str(len(data.ids)),
         "--embeddings", str(work / "embeddings.npz"), "--model", MODEL],
        **run,
    )  # fmt: skip
    return data_dir


def service_web(data_dir: Path, redis_url: str, n_shards: int, logs: Path) -> WebProcess:
    return WebProcess(web_env(data_dir, redis_url, n_shards), logs, WORKERS, THREADS).start()


class PgvectorWeb(WebProcess):
    """gunicorn serving bench/pgvector_site.py against the throwaway cluster."""

    def start(self) -> PgvectorWeb:
        self.port = free_port()
        log = (self.log_dir / "pgvector-web.log").open("w")
        cmd = [
            sys.executable, "-m", "gunicorn", "bench.pgvector_site:application",
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
            "--threads", str(self.threads), "--worker-class", "gthread", "--backlog", "256",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=log)
        return self


def pgvector_web(port: int, ef_search: int, logs: Path) -> PgvectorWeb:
    env = {**os.environ, "PGVECTOR_PORT": str(port), "PGVECTOR_EF_SEARCH": str(ef_search)}
    return PgvectorWeb(env, logs, WORKERS, THREADS).start()


def pgvector_stack_web(
    data_dir: Path, redis_url: str, n_shards: int, port: int, ef_search: int, logs: Path
) -> WebProcess:
    """The project's own site (searchsite.wsgi) with bench/pgvector_stack.py's view added."""
    env = {
        **web_env(data_dir, redis_url, n_shards),
        "DJANGO_SETTINGS_MODULE": "bench.pgvector_stack_settings",
        "PGVECTOR_PORT": str(port),
        "PGVECTOR_EF_SEARCH": str(ef_search),
    }
    return WebProcess(env, logs, WORKERS, THREADS, log_name="pgvector-stack-web.log").start()


def paths_file(path: Path, template: str, products: np.ndarray) -> Path:
    path.write_text("\n".join(template.format(pid=int(p)) for p in products))
    return path


def warm(base: str, paths: Path) -> None:
    """GET every path once: the measured cells then meet the caches (cards, stored
    vectors, Postgres buffers) a server in service has, not a first pass over them."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        for path in paths.read_text().split():
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"warming {base}{path}: HTTP {response.status}")
    finally:
        conn.close()


def http_load(base: str, paths: Path, concurrency: int, seconds: float, warmup: float) -> dict:
    cmd = [str(HERE / "closed_loop.py"), "http", "--base", base, "--paths", str(paths)]
    return closed_loop(cmd, concurrency, seconds, warmup)
