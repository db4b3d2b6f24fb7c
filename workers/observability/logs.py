"""Log records with the request id, as plain text or one JSON object a line.

One configuration, `logging_config()`, serves every process: Django's LOGGING (the web
and management commands), gunicorn's `logconfig_dict` (its master's and workers' own
lines, `gunicorn_hooks.py`) and the Celery workers and beat, which apply it in place of
Celery's own (`celery_worker.py`). So every line of every process goes through one
console handler, with one formatter.

`RequestIdFilter` on that handler gives every record `record.request_id` ("-" outside a
request). `LOG_FORMAT=json` picks `JsonFormatter` (python-json-logger): every `extra=`
value of a record is a field of its object, so the access log's method, path, status and
duration are fields, not text to parse.
"""

from __future__ import annotations

import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from workers.config.process import LOG_FORMATS
from workers.observability.context import current_request_id, is_valid

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

# The record attributes every JSON object has, in this order, and their names there.
_JSON_FIELDS = "%(levelname)s %(name)s %(message)s %(process)d %(threadName)s"
_RENAMED = {
    "levelname": "level",
    "name": "logger",
    "threadName": "thread",
    "exc_info": "exception",
    "stack_info": "stack",
}
# Never fields: Django's `django.request` records carry the HttpRequest itself (its id is
# taken from it); the request id is written once, by add_fields.
_NOT_FIELDS = ("request", "request_id")


def _id_of_request(record: logging.LogRecord) -> str | None:
    """The id of the request a record is about. Django logs a response's 4xx/5xx
    (`django.request`) after the whole middleware chain has returned, outside the id's
    binding, but with the request in `record.request`."""
    value = getattr(getattr(record, "request", None), "request_id", None)
    return value if is_valid(value) else None


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = _id_of_request(record) or current_request_id() or "-"
        return True


def _request_id(record: logging.LogRecord) -> str | None:
    value = getattr(record, "request_id", None) or _id_of_request(record) or current_request_id()
    return value if value and value != "-" else None


class JsonFormatter(_LibraryJsonFormatter):
    """One JSON object per record: time (UTC, ms), request_id, level, logger, message,
    process, thread, then every `extra=` field of the record, and the exception or stack
    text (one string: a traceback stays on its line)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", _RENAMED)
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, *_NOT_FIELDS])
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__(*(args or (_JSON_FIELDS,)), **kwargs)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        log_data["request_id"] = _request_id(record)
        super().add_fields(log_data, record, message_dict)


def logging_config(fmt: str = "plain", level: str = "INFO") -> dict[str, Any]:
    """The dictConfig of every process: one console handler (stderr) with the request id
    filter, which every logger reaches through the root logger."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be 'plain' or 'json', not {fmt!r}")

    def through_root() -> dict[str, Any]:
        return {"handlers": [], "propagate": True, "level": level}

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "workers.observability.logs.RequestIdFilter"}},
        "formatters": {
            "plain": {"format": PLAIN_FORMAT},
            "json": {"()": "workers.observability.logs.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": fmt,
                "filters": ["request_id"],
            },
            "null": {"class": "logging.NullHandler"},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's defaults give `django` a console handler of its own (plain text,
            # under DEBUG) and an email handler: each 4xx/5xx line came out twice.
            "django": through_root(),
            "django.server": through_root(),
            # gunicorn's own lines (startup, worker exits, errors) through the same handler.
            "gunicorn.error": through_root(),
            # The application writes the access log (catalog.middleware: request id, the
            # client as the rate limits see it, secrets redacted); gunicorn's would repeat
            # every request without those.
            "gunicorn.access": {"handlers": ["null"], "propagate": False},
            # faiss logs at INFO every CPU-specific build it could not load before the one
            # it did.
            "faiss.loader": {"level": "WARNING"},
            # The web's access log stays on whatever LOG_LEVEL says.
            "searchsite.access": {"level": "INFO"},
        },
    }


def configure(config: dict[str, Any]) -> None:
    """Apply `config` (Django's LOGGING_CONFIG callable, and Celery's). With JSON lines,
    Python's warnings go through logging too, or each would be a plain line on stderr."""
    logging.config.dictConfig(config)
    json_lines = config.get("handlers", {}).get("console", {}).get("formatter") == "json"
    logging.captureWarnings(json_lines)
