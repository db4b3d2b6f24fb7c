"""A whole private deployment for benchmarks: Redis, SQLite, gunicorn, encode and shard workers.

Everything lives in one scratch directory and on free ports; nothing touches the
machine's shared Redis or database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchsite.celery import worker_argv  # noqa: E402
from workers.redis_process import RedisProcess, free_port  # noqa: E402


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Stack:
    directory: Path
    shards: int = 2
    web_workers: int = 2
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    redis: RedisProcess | None = None
    web_port: int = 0

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    def start(self) -> Stack:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.redis = RedisProcess(self.directory / "redis")
        self.redis.start()
        self.web_port = free_port()
        self.env = {
            **os.environ,
            "DATA_DIR": str(self.directory),
            "REDIS_URL": self.redis.url,
            "CELERY_BROKER_URL": self.redis.url,
            "CELERY_RESULT_BACKEND": self.redis.url,
            "SEARCH_SHARDS": str(self.shards),
            "CLIP_MODEL": os.environ.get("CLIP_MODEL", str(self.directory / "tiny-clip")),
            "CLIP_FALLBACK_DIR": str(self.directory / "tiny-clip"),
            "THROTTLE_ANON": "100000000/minute",
            "THROTTLE_USER": "100000000/minute",
            "THROTTLE_SEARCH": "100000000/minute",
            "ADMIN_PASSWORD": "bench-admin-password",
            "PYTHONUNBUFFERED": "1",
        }
        self.manage("migrate", "--noinput")
        self.manage("make_tiny_clip", str(self.directory / "tiny-clip"))
        self.token = self.manage("ensure_admin").split("API token:")[1].split()[0]
        python = sys.executable
        self._spawn("encode", worker_argv(python, ["encode", "celery"], "encode@bench", "WARNING"))
        for n in range(self.shards):
            self._spawn(
                f"shard{n}", worker_argv(python, [f"shard.{n}"], f"shard{n}@bench", "WARNING")
            )
        self._spawn(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "searchsite.wsgi",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--workers",
                str(self.web_workers),
                "--threads",
                "8",
            ],
        )
        self._wait_healthy()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.directory / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def _wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                health = urllib.request.Request(  # noqa: S310 (always http://127.0.0.1:<port>)
                    f"{self.url}/api/health/", headers={"Authorization": f"Token {self.token}"}
                )
                with urllib.request.urlopen(health, timeout=3) as response:  # noqa: S310
                    body = json.loads(response.read())
                queues = body.get("celery", {}).get("queues", {})
                if all(f"shard.{n}" in queues for n in range(self.shards)) and "encode" in queues:
                    return
            except OSError:
                pass
            time.sleep(1)
        raise RuntimeError(f"the stack did not become healthy; logs in {self.directory}")

    def memory(self) -> dict[str, float]:
        """RSS of every process of the stack (gunicorn: master plus its workers)."""
        out = {name: rss_mb(p.pid) for name, p in self.procs.items() if p.poll() is None}
        web = self.procs.get("web")
        if web is not None:
            children = Path(f"/proc/{web.pid}/task/{web.pid}/children")
            for i, pid in enumerate(children.read_text().split() if children.exists() else []):
                out[f"web.{i}"] = rss_mb(int(pid))
        if self.redis and self.redis.proc:
            out["redis"] = rss_mb(self.redis.proc.pid)
        return out

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.redis:
            self.redis.stop()
