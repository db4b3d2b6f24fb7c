"""Observability: Prometheus metrics, request ids and structured logs.

metrics.py         every metric of the service, defined once (import it, then `.inc()` /
                   `.observe()` where the event happens); Django-free
multiproc.py       the multiprocess registry: the shared directory, dead processes'
                   files, rendering the host's aggregate for /metrics
context.py         the request id of the work in progress (a contextvar), validated
logs.py            the logging of every process: the request id on every record, plain text
                   or JSON lines (python-json-logger), one console handler
shard_gauges.py    the per-shard gauges a shard replica refreshes every few seconds
celery_worker.py   Celery signal handlers: a metrics HTTP port per worker, logging setup
celery_programs.py `celery worker` and `celery beat` with no banner under JSON logs
gunicorn_hooks.py  gunicorn's config (`-c python:workers.observability.gunicorn_hooks`):
                   its logging, server hooks
"""
