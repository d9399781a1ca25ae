"""API test fixtures: a client per role, each signed in with a real DRF token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.brokers import get_broker
from django_q.signing import SignedPackage
from django_q.status import Stat, Status
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from project.api.roles import INGEST, OPERATOR, VIEWER, role_group


def client_for(username: str, *roles: str) -> APIClient:
    user = get_user_model().objects.create_user(username)
    for role in roles:
        user.groups.add(role_group(role))
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    client.user = user
    return client


@pytest.fixture
def cluster(db) -> Iterator[None]:
    """A django-q2 cluster heartbeat, as a running cluster writes it every few seconds."""
    broker = get_broker()
    key = Stat.get_key("test-cluster")
    broker.set_stat(key, SignedPackage.dumps(Status(pid=1, cluster_id="test-cluster"), True), 60)
    yield
    broker.cache.delete(key)


@pytest.fixture
def anonymous(db) -> APIClient:
    return APIClient()


@pytest.fixture
def viewer(db) -> APIClient:
    return client_for("viewer-1", VIEWER)


@pytest.fixture
def operator(db) -> APIClient:
    return client_for("operator-1", OPERATOR)


@pytest.fixture
def ingest(db) -> APIClient:
    return client_for("ingest-1", INGEST)


@pytest.fixture
def no_role(db) -> APIClient:
    return client_for("nobody-1")


def walk(client, url, key: str = "id", **params) -> list:
    """The ``key`` (the id) of every row of a list, following ``next`` to the end."""
    response = client.get(url, params)
    ids = []
    while True:
        assert response.status_code == 200, response.content
        ids += [row[key] for row in response.json()["results"]]
        if not response.json()["next"]:
            return ids
        response = client.get(response.json()["next"])


def count_queries(client, url, **params) -> int:
    """How many queries one GET of ``url`` makes."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params)
    assert response.status_code == 200, response.content
    return len(captured.captured_queries)


def queued_tasks() -> list[dict]:
    """The tasks waiting in django-q2's queue, read without taking them, whichever broker is
    configured: the ORM broker's rows, or the Redis broker's list."""
    broker = get_broker()
    if hasattr(broker, "connection") and hasattr(broker.connection, "lrange"):
        packed = broker.connection.lrange(broker.list_key, 0, -1)
        return [SignedPackage.loads(item) for item in packed]
    from django_q.models import OrmQ

    return [row.task for row in OrmQ.objects.order_by("id")]


def take_queued_tasks() -> None:
    """Empty the queue, as a running cluster taking every task would."""
    get_broker().purge_queue()


@pytest.fixture
def task_queue(db) -> Iterator[None]:
    """A queue empty at the start and the end of the test (the Redis broker's queue is not
    rolled back with the test's transaction)."""
    take_queued_tasks()
    yield
    take_queued_tasks()
