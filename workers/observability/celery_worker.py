"""Observability of Celery workers, wired through Celery signals.

- `worker_ready` (the main worker process, once): serve Prometheus metrics, and `/ready`
  (200 when every shard this worker serves is ready, else 503 with the reasons), on
  WORKER_METRICS_PORT (0 or unset: off) at WORKER_METRICS_ADDR (default 127.0.0.1).
  In multiprocess mode the port serves the aggregate of the metrics directory, which
  includes prefork pool children.
- `worker_process_shutdown` / `worker_shutdown`: drop the exiting process's live gauges.
- `celeryd_init` (before anything else of a worker) and `setup_logging` (worker and beat):
  the logging of every process (`logs.logging_config`) in place of Celery's own, so a
  worker's and beat's lines have the web's format, request id and, with LOG_FORMAT=json,
  are one JSON object each. Their stdout and stderr are redirected to the logger
  `celery.redirected` (as Celery itself does), so a stray print is a log record too.
- `celeryd_after_setup`: one line saying what the worker consumes (the banner's facts).

With LOG_FORMAT=json, worker and beat also print no banner (plain text on stdout):
`celery_programs.py`.

Importing this module connects the handlers; prometheus_client is imported only in them,
after Django settings have set PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import signals

from workers.config import worker_config

logger = logging.getLogger(__name__)

_server: Any = None
_lock = threading.Lock()


def start_metrics_server(port: int, addr: str | None = None) -> Any:
    """Serve /metrics, and /ready for a readiness probe, on `addr:port` from a daemon thread."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    from workers.observability import metrics as _metrics  # noqa: F401  (define them all)
    from workers.observability.multiproc import collecting_registry
    from workers.observability.readiness import with_readiness
    from workers.serving.bootsteps import running_shards

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # probes every few seconds
            pass

    addr = addr or worker_config().observability.metrics_addr
    app = with_readiness(make_wsgi_app(collecting_registry()), running_shards)
    server = make_server(addr, port, app, ThreadingWSGIServer, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


@signals.worker_ready.connect
def _on_worker_ready(sender: object = None, **kwargs: object) -> None:
    global _server
    port = worker_config().observability.metrics_port
    if not port:
        return
    with _lock:
        if _server is not None:
            return
        try:
            _server = start_metrics_server(port)
        except OSError as exc:  # a busy port must not stop the worker from working
            logger.error("worker metrics: cannot listen on port %d: %s", port, exc)
            return
    logger.info("worker metrics: serving Prometheus metrics on port %d", port)


@signals.worker_process_shutdown.connect
def _on_process_shutdown(pid: int | None = None, **kwargs: object) -> None:
    from workers.observability.multiproc import mark_dead

    mark_dead(pid or os.getpid())


@signals.worker_shutdown.connect
def _on_worker_shutdown(sender: object = None, **kwargs: object) -> None:
    global _server
    from workers.observability.multiproc import mark_dead

    with _lock:
        if _server is not None:
            _server.shutdown()
            _server = None
    mark_dead(os.getpid())
    logger.info("worker %s: shut down", getattr(sender, "hostname", None) or "-")


def _configure_logging() -> None:
    from workers.observability.logs import configure, logging_config

    logs = worker_config().observability
    configure(logging_config(logs.log_format, logs.log_level))


@signals.celeryd_init.connect
def _on_worker_init(**kwargs: object) -> None:
    """Before the worker checks its privileges (a warning) or logs anything."""
    _configure_logging()


@signals.setup_logging.connect
def _on_setup_logging(**kwargs: object) -> None:
    """Connected, this keeps Celery from configuring logging (its handler on the root
    logger, its formats); LOG_LEVEL, not `--loglevel`, sets the level, as in the web."""
    from celery import current_app

    _configure_logging()
    if current_app.conf.worker_redirect_stdouts:
        current_app.log.redirect_stdouts(current_app.conf.worker_redirect_stdouts_level)


@signals.celeryd_after_setup.connect
def _on_worker_setup(sender: str = "", instance: Any = None, **kwargs: object) -> None:
    amqp = getattr(getattr(instance, "app", None), "amqp", None)
    queues = sorted(amqp.queues.consume_from) if amqp is not None else []
    logger.info(
        "worker %s consumes %s (concurrency %s)",
        sender,
        ", ".join(queues) or "-",
        getattr(instance, "concurrency", "-"),
        extra={"worker": sender, "queues": queues},
    )
