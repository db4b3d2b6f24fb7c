"""What benchmarked processes spend, read from /proc: CPU time, wake-ups, and for the
servers of an RPC (shard processes and Redis) the same less what they spend idle."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # nothing of the code under test: bench/rpc_ab.py loads this by path
    from bench.search_procs import ShardProcs
    from workers.redis_process import RedisProcess


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) the processes have used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wakeups(pids: list[int]) -> int:
    """Voluntary context switches of every thread of the processes so far: each one is a
    sleep on a socket (or a lock) that something had to wake up."""
    total = 0
    for pid in pids:
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            for line in status.read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    total += int(line.split()[1])
    return total


class Servers:
    """What the shard processes and Redis spend: the server side of an RPC's cost (CPU,
    wake-ups, and the commands Redis ran)."""

    def __init__(self, shards: ShardProcs, redis_proc: RedisProcess, client) -> None:
        self.shard_pids = [p.pid for p in shards.procs]
        self.redis_pid = redis_proc.proc.pid
        self.pids = [*self.shard_pids, self.redis_pid]
        self.client = client

    def cpu(self) -> float:
        return cpu_seconds(self.pids)

    def sample(self) -> np.ndarray:
        """(CPU s, wake-ups, Redis commands) so far, less what the servers spend idle (their
        heartbeats and log followers) since `calibrate`; the bench's INFO calls excluded."""
        commands = int(self.client.info("stats")["total_commands_processed"])
        shards, redis_cpu = cpu_seconds(self.shard_pids), cpu_seconds([self.redis_pid])
        now = np.array([shards + redis_cpu, wakeups(self.pids), commands, shards, redis_cpu])
        self._infos += 1
        return now - self.idle * (time.perf_counter() - self._since) - [0, 0, self._infos, 0, 0]

    def calibrate(self, seconds: float) -> None:
        """Measure the idle rate: nobody searches for `seconds`."""
        self.idle, self._since, self._infos = np.zeros(5), time.perf_counter(), 0
        start = self.sample()
        time.sleep(seconds)
        self.idle = (self.sample() - start) / seconds
        self._since, self._infos = time.perf_counter(), 0
