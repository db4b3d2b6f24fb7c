"""Error tracking with Sentry for the web and the Celery processes; off unless a DSN is given.

settings.py calls `init_sentry` once, so every process that loads the settings reports:
gunicorn and waitress, every Celery worker (encode, index, shards), beat and Flower.
What becomes an event: an exception a view or a task raises, and any record logged at
ERROR or above. The API's own 500s are answered as JSON and logged with the traceback
(catalog/api/errors.py), so they arrive as logged exceptions, under the request id.

No personal data: `send_default_pii=False` keeps out the client's address, cookies, the
user and the credential headers; stack frames go without their local variables (the
request, form data, tokens); the values of credential-like query parameters are
redacted as in the access log (workers/observability/redact.py); and Redis commands,
whose keys carry client addresses (the rate limits' counters), are not recorded.
"""

from __future__ import annotations

from typing import Any

from workers.observability.redact import redact_query


def init_sentry(dsn: str, *, environment: str, traces_sample_rate: float) -> bool:
    """Start the Sentry client for this process; False (and nothing started) without a DSN.

    A `traces_sample_rate` of 0 turns tracing off altogether (no spans are made), so the
    search path pays nothing for it; above 0, that fraction of requests and tasks is traced.
    """
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        traces_sample_rate=traces_sample_rate or None,
        send_default_pii=False,
        include_local_variables=False,
        # These two only: the auto-enabled Redis one would record every command of the search
        # path as a breadcrumb (its cost on each, and keys that hold client addresses).
        integrations=[DjangoIntegration(), CeleryIntegration()],
        auto_enabling_integrations=False,
        before_send=scrub_event,
    )
    return True


def scrub_event(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """The event with credential-like query values redacted (older SDKs keep query strings)."""
    request = event.get("request")
    if isinstance(request, dict) and isinstance(request.get("query_string"), str):
        request["query_string"] = redact_query(request["query_string"])
    return event
