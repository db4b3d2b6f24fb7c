"""The request id of the work in progress, carried in a contextvar.

The web sets it from the X-Request-ID header (or makes one), the search path sends
it as the RPC `trace_id`, and the RPC server binds it again on the shard side, so one
id follows a query through every process's logs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

MAX_LENGTH = 64
_VALID = re.compile(rf"^[A-Za-z0-9-]{{1,{MAX_LENGTH}}}$")

_request_id: ContextVar[str] = ContextVar("request_id", default="")


def is_valid(value: object) -> bool:
    """Short (1-64 characters) and made of letters, digits and dashes only: safe in logs."""
    return isinstance(value, str) and bool(_VALID.match(value))


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str:
    """The bound request id, or "" outside a request."""
    return _request_id.get()


@contextmanager
def bound_request_id(value: str) -> Iterator[str]:
    """Bind `value` for the duration of the block (thread- and task-local)."""
    token = _request_id.set(value)
    try:
        yield value
    finally:
        _request_id.reset(token)
