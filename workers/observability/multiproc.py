"""prometheus_client's multiprocess mode: one directory of per-process files per host.

Every process of a host (gunicorn workers, encode and shard workers) writes its
metrics to files named `<kind>_<pid>.db` in PROMETHEUS_MULTIPROC_DIR; the /metrics
view reads them all and serves the sum. The variable must be set before
prometheus_client is imported (Django settings set it; so does `make run`).
Without it, metrics stay in the process (library use, Django-free tests).
The aggregate holds this service's metrics only, plus each live process's CPU, memory
and file descriptors read from /proc (`HostProcesses`).

Live gauges of a dead process must go, or a dead replica would be reported forever:
`forget_dead()` removes them at every process start and the Celery and gunicorn
hooks remove a process's own when it exits. Counters and histograms of dead
processes stay, so the host's totals never go backwards.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "vps_"  # every metric of this service (metrics.py), and the process metrics
_FILE = re.compile(r"^[a-z_]+_(\d+)\.db$")


def multiproc_dir() -> Path | None:
    value = os.environ.get(ENV)
    return Path(value) if value else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def pids_in(directory: Path) -> set[int]:
    """The process ids that have metric files in `directory`."""
    found = set()
    for path in directory.glob("*.db"):
        match = _FILE.match(path.name)
        if match:
            found.add(int(match.group(1)))
    return found


def forget_dead(directory: Path) -> list[int]:
    """Remove the live gauges of processes that are gone; returns their pids.

    Pids are only meaningful inside one PID namespace: share a directory between the
    processes of one host (or container), never across containers.
    """
    dead = sorted(pid for pid in pids_in(directory) if pid != os.getpid() and not _alive(pid))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(directory))
    return dead


def remove_dead_files(directory: Path) -> list[int]:
    """Delete every file of processes that are gone, counters included: for a fresh start
    of a whole host (`make run`), never while its processes run (totals would drop)."""
    dead = sorted(pid for pid in pids_in(directory) if pid != os.getpid() and not _alive(pid))
    for pid in dead:
        for path in directory.glob(f"*_{pid}.db"):
            path.unlink(missing_ok=True)
    return dead


def mark_dead(pid: int) -> None:
    """Process `pid` exited: drop its live gauges (no-op outside multiprocess mode)."""
    directory = multiproc_dir()
    if directory is not None and directory.is_dir():
        multiprocess.mark_process_dead(pid, str(directory))


def prepare() -> Path | None:
    """Create the directory and forget dead processes; call before the first metric exists."""
    directory = multiproc_dir()
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    forget_dead(directory)
    return directory


class ServiceMetrics(Collector):
    """The sum of the directory's files, this service's metrics (`vps_*`) only.

    A library that defines metrics of its own writes them to the directory too when its
    process has the variable: Flower did under `make run` (its `flower_*` series showed
    on the web's /metrics, summed with nothing of ours). The exported names stay the
    documented ones (README, Observability)."""

    def __init__(self, directory: Path) -> None:
        self._files = multiprocess.MultiProcessCollector(None, path=str(directory))

    def collect(self) -> Iterator[Metric]:
        for family in self._files.collect():
            if family.name.startswith(PREFIX):
                yield family


class HostProcesses(Collector):
    """prometheus_client's process metrics (CPU, memory, file descriptors, start time) of
    every live process with files in the directory, read from /proc at scrape time and
    labelled by pid: `vps_process_*`.

    The process collector reports the process it runs in, and multiprocess mode sums files,
    so each process's own would need a file format prometheus_client does not have; a
    reader on the same host (the directory is per host, per PID namespace) can read any
    process's /proc entries instead. Without /proc (not Linux) there are none."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        current = 0  # the pid the collector reads: one collector, one /proc/stat read
        proc = ProcessCollector(namespace=PREFIX.rstrip("_"), pid=lambda: current, registry=None)
        merged: dict[str, Metric] = {}
        for pid in sorted(pids_in(self._directory)):
            if pid != os.getpid() and not _alive(pid):
                continue
            current = pid
            for family in proc.collect():
                into = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    into.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        yield from merged.values()


def collecting_registry(directory: Path | None = None) -> CollectorRegistry:
    """The aggregate of `directory` (default: this host's, in multiprocess mode) and its
    processes' process metrics, else this process's default registry."""
    directory = directory or multiproc_dir()
    if directory is None:
        return REGISTRY
    registry = CollectorRegistry()
    registry.register(ServiceMetrics(directory))
    registry.register(HostProcesses(directory))
    return registry


def render(directory: Path | None = None) -> tuple[bytes, str]:
    """(Prometheus text exposition, its content type)."""
    return generate_latest(collecting_registry(directory)), CONTENT_TYPE_LATEST
