"""gunicorn server hooks: `gunicorn -c python:workers.observability.gunicorn_hooks ...`.

`on_starting` loads the Django settings in the master, which puts the metrics
directory (PROMETHEUS_MULTIPROC_DIR) in the environment every worker inherits;
`child_exit` drops an exited worker's live gauges, as prometheus_client's
multiprocess mode asks.
"""

from __future__ import annotations

import os
from typing import Any


def on_starting(server: Any) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "searchsite.settings")
    from django.conf import settings

    settings.PROMETHEUS_MULTIPROC_DIR  # noqa: B018  (loading settings sets the variable)


def child_exit(server: Any, worker: Any) -> None:
    from workers.observability.multiproc import mark_dead

    mark_dead(worker.pid)
