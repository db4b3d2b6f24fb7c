"""Observability: Prometheus metrics, request ids and structured logs.

metrics.py         every metric of the service, defined once (import it, then `.inc()` /
                   `.observe()` where the event happens); Django-free
multiproc.py       the multiprocess registry: the shared directory, dead processes'
                   files, rendering the host's aggregate for /metrics
context.py         the request id of the work in progress (a contextvar), validated
logs.py            a logging filter adding the request id to every record, a JSON formatter
shard_gauges.py    the per-shard gauges a shard replica refreshes every few seconds
celery_worker.py   Celery signal handlers: a metrics HTTP port per worker, logging setup
gunicorn_hooks.py  gunicorn server hooks (`-c python:workers.observability.gunicorn_hooks`)
"""
