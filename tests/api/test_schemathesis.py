"""Schemathesis against the OpenAPI schema, in process (WSGI): no 500s, answers match the schema.

Every operation gets a bounded number of generated requests, sent with a staff token so
the writes run too. No search worker runs, so searches must answer the documented 503,
quickly: the RPC deadlines are cut short for the test.

The schema is the one /api/schema/ serves, generated at import time by drf-spectacular
(schemathesis's lazy fixture loader does not run on pytest 9, and fetching it over WSGI
at import time would reach Redis before the session has pointed Django at its own).
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.django_db


def no_server_error(ctx, response, case) -> None:
    """Any 5xx fails, except the documented 503 (no search or encode worker runs here)."""
    if response.status_code == 503:
        assert response.json()["error"] == "unavailable", response.text
    elif response.status_code >= 500:
        raise AssertionError(f"server error {response.status_code}: {response.text[:300]}")


CHECKS = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_dict(
    json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(None, public=True)))
)
schema.app = get_wsgi_application()


@pytest.fixture(autouse=True)
def _in_process_site(redis_url, settings):
    """Fast RPC deadlines, and the test's transaction kept open across requests."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    settings.SEARCH_TIMEOUT_S = 0.05
    settings.ENCODE_TIMEOUT_S = 0.05
    # As Django's test client does: requests must not close the test's connection.
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def staff_token(db) -> str:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user("fuzz", password="pw-fuzz-123", is_staff=True)
    return Token.objects.create(user=user).key


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, staff_token):
    case.call_and_validate(headers={"Authorization": f"Token {staff_token}"}, checks=CHECKS)
