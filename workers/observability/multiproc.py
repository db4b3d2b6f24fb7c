"""prometheus_client's multiprocess mode: one directory of per-process files per host.

Every process of a host (gunicorn workers, encode and shard workers) writes its
metrics to files named `<kind>_<pid>.db` in PROMETHEUS_MULTIPROC_DIR; the /metrics
view reads them all and serves the sum. The variable must be set before
prometheus_client is imported (Django settings set it; so does `make run`).
Without it, metrics stay in the process (library use, Django-free tests).

Live gauges of a dead process must go, or a dead replica would be reported forever:
`forget_dead()` removes them at every process start and the Celery and gunicorn
hooks remove a process's own when it exits. Counters and histograms of dead
processes stay, so the host's totals never go backwards.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

ENV = "PROMETHEUS_MULTIPROC_DIR"
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


def collecting_registry(directory: Path | None = None) -> CollectorRegistry:
    """The aggregate of `directory` (default: this host's, in multiprocess mode), else this
    process's default registry."""
    directory = directory or multiproc_dir()
    if directory is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    return registry


def render(directory: Path | None = None) -> tuple[bytes, str]:
    """(Prometheus text exposition, its content type)."""
    return generate_latest(collecting_registry(directory)), CONTENT_TYPE_LATEST
