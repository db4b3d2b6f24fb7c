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


@pytest.mark.parametrize("value", ["a", "abc-123-XYZ", "x" * 64, new_request_id()])
def test_valid_ids(value: str) -> None:
    assert is_valid(value)


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
