"""The programs `celery worker` and `celery beat` run, as the app names them
(searchsite/celery.py): Celery's own, printing no banner when logs are JSON lines
(LOG_FORMAT=json), since the banner is plain text on stdout. What it told (the queues
a worker consumes) is logged instead (`celery_worker.py`), as is a worker's shutdown.
"""

from __future__ import annotations

from typing import Any

from celery.apps.beat import Beat as CeleryBeat
from celery.apps.worker import Worker as CeleryWorker
from celery.apps.worker import install_worker_term_handler, install_worker_term_hard_handler

from workers.config import worker_config


def _json_lines() -> bool:
    return worker_config().observability.log_format == "json"


class Worker(CeleryWorker):
    """`celery worker`, with no banner when logs are JSON lines, nor the line its SIGTERM
    and SIGQUIT handlers print on stdout ("worker: Warm shutdown (MainProcess)"; the
    shutdown is logged instead, `celery_worker.py`)."""

    def on_before_init(self, quiet: bool = False, **kwargs: Any) -> None:
        super().on_before_init(quiet=quiet or _json_lines(), **kwargs)

    def install_platform_tweaks(self, worker: Any) -> None:
        super().install_platform_tweaks(worker)
        if _json_lines():
            install_worker_term_handler(worker, verbose=False)
            install_worker_term_hard_handler(worker, verbose=False)


class Beat(CeleryBeat):
    """`celery beat`, with no banner when logs are JSON lines."""

    def __init__(self, *args: Any, quiet: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, quiet=quiet or _json_lines(), **kwargs)
