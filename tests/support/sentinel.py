"""A Redis master, its replicas and Sentinel processes on free ports, all with passwords.

For failover tests: `SentinelCluster(tmp_path).start()` gives a master and two replicas
that follow it, watched by three sentinels (quorum 2) that notice a dead master after
`down_after_ms`; `url()` is the redis+sentinel:// URL the application takes. Two replicas:
after one is promoted the other follows it, so writes that wait for a replica (WAIT 1)
go on. Every process is this test's own; `stop()` ends them all.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import redis

from workers.pids import terminate
from workers.redis_process import RedisProcess, find_redis_server, free_port


class DataNode(RedisProcess):
    """A redis-server that can follow a master and be promoted (the same password both ways)."""

    def __init__(self, data_dir: Path, password: str, replica_of: int | None = None) -> None:
        super().__init__(data_dir, password=password)
        self.replica_of = replica_of

    def write_config(self) -> Path:
        path = super().write_config()
        lines = [f'masterauth "{self.password}"']
        if self.replica_of is not None:
            lines.append(f"replicaof 127.0.0.1 {self.replica_of}")
        with path.open("a") as config:
            config.write("\n".join(lines) + "\n")
        return path

    def client(self) -> redis.Redis:
        """A direct client (not through Sentinel), to look at this node itself."""
        return redis.Redis.from_url(self.url, socket_timeout=2)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last write; what a crashed host looks like."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None


class SentinelProcess:
    """One `redis-server --sentinel` watching `master_name`, with a password of its own."""

    def __init__(
        self,
        data_dir: Path,
        *,
        master_name: str,
        master_port: int,
        data_password: str,
        password: str,
        quorum: int,
        down_after_ms: int,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.password = password
        self.lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f'dir "{self.data_dir}"',
            f'logfile "{self.data_dir / "sentinel.log"}"',
            f'requirepass "{password}"',
            f'sentinel sentinel-pass "{password}"',  # the sentinels talk to each other too
            f"sentinel monitor {master_name} 127.0.0.1 {master_port} {quorum}",
            f'sentinel auth-pass {master_name} "{data_password}"',
            f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
            f"sentinel failover-timeout {master_name} 5000",
            f"sentinel parallel-syncs {master_name} 1",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_timeout=2)

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "sentinel.conf"  # Sentinel rewrites it: it must be writable
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(self.lines) + "\n")
        self.proc = subprocess.Popen(
            [find_redis_server(), str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None


class SentinelCluster:
    """Master + `n_replicas` replicas + `n_sentinels` sentinels; `nodes[0]` is the first master."""

    def __init__(
        self,
        base: Path,
        *,
        master_name: str = "vps",
        n_replicas: int = 2,
        n_sentinels: int = 3,
        down_after_ms: int = 1000,
    ) -> None:
        self.master_name = master_name
        self.password = secrets.token_urlsafe(18)
        self.sentinel_password = secrets.token_urlsafe(18)
        master = DataNode(base / "node0", self.password)
        self.nodes = [master] + [
            DataNode(base / f"node{i}", self.password, replica_of=master.port)
            for i in range(1, n_replicas + 1)
        ]
        self.sentinels = [
            SentinelProcess(
                base / f"sentinel{i}",
                master_name=master_name,
                master_port=master.port,
                data_password=self.password,
                password=self.sentinel_password,
                quorum=n_sentinels // 2 + 1,
                down_after_ms=down_after_ms,
            )
            for i in range(n_sentinels)
        ]

    def url(self, db: int = 0) -> str:
        """The application's URL: the sentinels' password as a URL option."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return (
            f"redis+sentinel://:{quote(self.password, safe='')}@{hosts}/{self.master_name}/{db}"
            f"?sentinel_password={quote(self.sentinel_password, safe='')}"
        )

    def start(self, timeout: float = 60.0) -> SentinelCluster:
        """Nodes, then sentinels, and wait until every sentinel sees every replica (from the
        master's INFO, every 10 s) and peer: a liveness wait, generous for a loaded machine."""
        try:
            for node in self.nodes:
                node.start()
            for sentinel in self.sentinels:
                sentinel.start()
            self.wait_until(self._settled, timeout, "the sentinels to see every node and peer")
        except BaseException:
            self.stop()
            raise
        return self

    def _settled(self) -> bool:
        for node in self.nodes[1:]:
            replica = node.client()
            try:
                if replica.info("replication").get("master_link_status") != "up":
                    return False
            finally:
                replica.close()
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                state = client.sentinel_master(self.master_name)
            finally:
                client.close()
            replicas, peers = state["num-slaves"], state["num-other-sentinels"]
            if replicas < len(self.nodes) - 1 or peers < len(self.sentinels) - 1:
                return False
        return True

    def master_port(self) -> int:
        """Where the sentinels say the master is now."""
        for sentinel in self.sentinels:
            if sentinel.proc is None:
                continue
            client = sentinel.client()
            try:
                address = client.sentinel_get_master_addr_by_name(self.master_name)
            except redis.RedisError:
                continue
            finally:
                client.close()
            if address:
                return int(address[1])
        raise RuntimeError("no sentinel answers")

    def node(self, port: int) -> DataNode:
        return next(node for node in self.nodes if node.port == port)

    def wait_promoted(self, old_port: int, timeout: float = 30.0) -> DataNode:
        """Wait until the sentinels name another master and it says it is one."""

        def promoted() -> DataNode | None:
            port = self.master_port()
            if port == old_port:
                return None
            client = self.node(port).client()
            try:
                return self.node(port) if client.info("replication")["role"] == "master" else None
            finally:
                client.close()

        return self.wait_until(promoted, timeout, "a replica to be promoted")

    def failover(self) -> None:
        """SENTINEL FAILOVER: a coordinated switch; the old master becomes a replica."""
        client = self.sentinels[0].client()
        try:
            client.execute_command("SENTINEL FAILOVER", self.master_name)
        finally:
            client.close()

    @staticmethod
    def wait_until(predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            try:
                found = predicate()
            except (redis.RedisError, OSError, RuntimeError):
                found = None
            if found:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for node in self.nodes:
            node.stop()
