"""A property-based run of schemathesis against the API's own OpenAPI schema.

Every operation gets generated requests, valid and invalid, sent in-process through the WSGI
application as an operator (the role that may call everything). The run must find no 5xx,
and every response must match the schema: its status code is documented, its content type is
the declared one, and its body validates against the declared response schema. Bounded and
derandomized, so CI explores the same examples on every run.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from decisions.engine import run_decision_cycle
from tests import factories
from tests.api.conftest import client_for

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def load_schema():
    """The schema the API serves, generated in process (no database needed to describe it),
    with calls going through the WSGI application."""
    spec = SchemaGenerator().get_schema(request=None, public=True)
    loaded = schemathesis.openapi.from_dict(json.loads(json.dumps(spec, default=str)))
    loaded.app = get_wsgi_application()
    return loaded


schema = load_schema()


@pytest.fixture
def in_process_requests():
    """Requests run inside the test's transaction, as Django's own test client runs them:
    without closing the connection at the end of each request (it would close the test's
    transaction on PostgreSQL)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def something_to_read(db, session_now, cluster, in_process_requests):
    """A pool with an entity, bars and a recommendation evaluated once; a cluster running."""
    pool = factories.make_pool(now=session_now, name="conformance")
    factories.add_bars("AAA", session_now)
    factories.make_recommendation("AAA", session_now, confidence="0.80")
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    return pool


@schema.parametrize()
@settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_response_matches_the_schema_and_none_is_a_server_error(case, something_to_read):
    token = client_for_once()
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)


def client_for_once() -> str:
    """One operator token per test (the database is rolled back between tests)."""
    from rest_framework.authtoken.models import Token

    token = Token.objects.filter(user__username="conformance-operator").first()
    if token is None:
        client = client_for("conformance-operator", "operator")
        token = Token.objects.get(user=client.user)
    return token.key
