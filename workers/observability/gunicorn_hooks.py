"""gunicorn server hooks: `gunicorn -c python:workers.observability.gunicorn_hooks ...`.

The master drops an exited worker's live gauges from the metrics directory, as
prometheus_client's multiprocess mode asks (`child_exit`). Needs
PROMETHEUS_MULTIPROC_DIR in the master's environment (`make run` sets it).
"""

from __future__ import annotations

from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    from workers.observability.multiproc import mark_dead

    mark_dead(worker.pid)
