"""Request ids: validation, binding, and log records (plain and JSON) that carry them."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from workers.observability.context import (
    bound_request_id,
    current_request_id,
    is_valid,
    new_request_id,
)
from workers.observability.logs import JsonFormatter, RequestIdFilter, logging_config


@pytest.mark.parametrize("value", ["a", "abc-123-XYZ", "x" * 64])
def test_valid_ids(value: str) -> None:
    assert is_valid(value)


def test_new_ids_are_valid_and_distinct() -> None:
    ids = {new_request_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(is_valid(i) for i in ids)


@pytest.mark.parametrize("value", ["", "x" * 65, "a b", "a\nb", "id;drop", "ünï", "a_b", None, 12])
def test_invalid_ids(value: object) -> None:
    assert not is_valid(value)


def test_binding_is_scoped_and_per_thread() -> None:
    seen: list[str] = []
    with bound_request_id("outer-1"):
        thread = threading.Thread(target=lambda: seen.append(current_request_id()))
        thread.start()
        thread.join()
        with bound_request_id("inner-2"):
            assert current_request_id() == "inner-2"
        assert current_request_id() == "outer-1"
    assert current_request_id() == ""
    assert seen == [""]


def record(message: str) -> logging.LogRecord:
    rec = logging.LogRecord("vps.test", logging.WARNING, __file__, 1, message, (), None)
    RequestIdFilter().filter(rec)
    return rec


def test_json_lines_carry_the_request_id() -> None:
    with bound_request_id("req-42"):
        line = JsonFormatter().format(record("shard %s slow"))
    entry = json.loads(line)
    assert entry["request_id"] == "req-42"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "vps.test"
    assert entry["message"] == "shard %s slow"
    assert entry["time"].endswith("+00:00")


def test_json_keeps_exceptions_on_one_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    assert "RuntimeError: boom" in json.loads(line)["exception"]


def test_records_outside_a_request() -> None:
    assert record("x").request_id == "-"
    assert json.loads(JsonFormatter().format(record("x")))["request_id"] is None


def test_logging_config_refuses_an_unknown_format() -> None:
    assert logging_config("json")["handlers"]["console"]["formatter"] == "json"
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_config("xml")


def test_extra_values_are_fields_of_the_json_line() -> None:
    rec = logging.LogRecord("searchsite.access", logging.INFO, __file__, 1, "GET / 200", (), None)
    rec.method, rec.status, rec.duration_ms = "GET", 200, 1.5
    entry = json.loads(JsonFormatter().format(rec))
    assert (entry["method"], entry["status"], entry["duration_ms"]) == ("GET", 200, 1.5)
    assert list(entry)[:5] == ["time", "request_id", "level", "logger", "message"]


class _Request:
    """What Django's `django.request` records carry: the request (with our id on it)."""

    request_id = "req-from-django"


def test_django_request_records_take_the_id_of_their_request() -> None:
    """Django logs a 4xx/5xx after the middleware chain returned, outside the id's binding."""
    rec = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found", (), None)
    rec.request, rec.status_code = _Request(), 404
    RequestIdFilter().filter(rec)
    assert rec.request_id == "req-from-django"
    entry = json.loads(JsonFormatter().format(rec))
    assert entry["request_id"] == "req-from-django"
    assert entry["status_code"] == 404
    assert "request" not in entry  # never the HttpRequest's repr


def test_every_logger_reaches_the_one_console_handler() -> None:
    """django's and gunicorn's loggers keep no handler of their own (a second line), and
    gunicorn's access log is off: the application writes one line a request."""
    config = logging_config("json", "INFO")
    for name in ("django", "django.server", "gunicorn.error"):
        assert config["loggers"][name]["handlers"] == [], name
        assert config["loggers"][name]["propagate"] is True, name
    access = config["loggers"]["gunicorn.access"]
    assert access["propagate"] is False
    assert config["handlers"][access["handlers"][0]]["class"] == "logging.NullHandler"
    assert config["root"]["handlers"] == ["console"]
