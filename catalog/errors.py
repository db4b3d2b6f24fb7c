"""One error model for the whole app: services raise these, the API maps them to JSON."""

from __future__ import annotations


class ServiceError(Exception):
    """A request that cannot be carried out as asked (a 4xx)."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}


class ServiceUnavailable(ServiceError):
    """A dependency (Redis, the search workers) cannot answer right now (503)."""

    status_code = 503
    code = "unavailable"
