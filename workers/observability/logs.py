"""Log records with the request id, as plain text or one JSON object a line.

`RequestIdFilter` goes on handlers, so every record reaching them, from any logger,
carries `record.request_id` ("-" outside a request). `LOG_FORMAT=json` picks
`JsonFormatter` in `logging_config()` (Django's LOGGING) and in Celery workers.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

from workers.observability.context import current_request_id

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id() or "-"
        return True


def _request_id(record: logging.LogRecord) -> str | None:
    value = getattr(record, "request_id", None) or current_request_id()
    return value if value and value != "-" else None


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request id, process,
    thread, and the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _request_id(record),
            "process": record.process,
            "thread": record.threadName,
        }
        if isinstance(getattr(record, "http", None), dict):
            entry["http"] = record.http  # the access log's fields (catalog.middleware)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_format() -> str:
    """ "json" or "plain" (the default), from LOG_FORMAT."""
    value = os.environ.get("LOG_FORMAT", "plain").strip().lower()
    if value not in ("json", "plain"):
        raise ValueError(f"LOG_FORMAT must be 'json' or 'plain', not {value!r}")
    return value


def make_formatter(fmt: str | None = None) -> logging.Formatter:
    return JsonFormatter() if (fmt or log_format()) == "json" else logging.Formatter(PLAIN_FORMAT)


def logging_config(fmt: str = "plain", level: str = "INFO") -> dict[str, object]:
    """A dictConfig for Django's LOGGING: one console handler with the request id filter."""
    if fmt not in ("plain", "json"):
        raise ValueError(f"LOG_FORMAT must be 'plain' or 'json', not {fmt!r}")
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
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # faiss logs at INFO every CPU-specific build it could not load before the one
            # it did.
            "faiss.loader": {"level": "WARNING"},
            # The web's access log (catalog.middleware) stays on whatever LOG_LEVEL says.
            "searchsite.access": {"level": "INFO"},
        },
    }


def install_on(logger: logging.Logger, fmt: str | None = None) -> None:
    """Give every handler of `logger` the request id filter and our formatter (Celery)."""
    formatter = make_formatter(fmt)
    for handler in logger.handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
        handler.setFormatter(formatter)
