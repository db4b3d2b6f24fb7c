"""gunicorn's configuration: `gunicorn -c python:workers.observability.gunicorn_hooks ...`.

`logconfig_dict` is the logging of every other process (`logs.logging_config`, from
LOG_FORMAT and LOG_LEVEL): gunicorn's own lines (startup, worker boots and exits,
errors) go through the same handler and formatter as the application's, one JSON
object a line with LOG_FORMAT=json. gunicorn's access log is off in it: the
application writes one line a request itself (catalog.middleware.AccessLogMiddleware).

`on_starting` loads the Django settings in the master, which puts the metrics
directory (PROMETHEUS_MULTIPROC_DIR) in the environment every worker inherits;
`child_exit` drops an exited worker's live gauges, as prometheus_client's
multiprocess mode asks.
"""

from __future__ import annotations

import os
from typing import Any

from workers.config import worker_config
from workers.observability.logs import logging_config

_LOGS = worker_config().observability
logconfig_dict = logging_config(_LOGS.log_format, _LOGS.log_level)


def on_starting(server: Any) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "searchsite.settings")
    from django.conf import settings

    settings.PROMETHEUS_MULTIPROC_DIR  # noqa: B018  (loading settings sets the variable)


def child_exit(server: Any, worker: Any) -> None:
    from workers.observability.multiproc import mark_dead

    mark_dead(worker.pid)
