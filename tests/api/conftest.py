"""API test fixtures: a client per role, each signed in with a real DRF token."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from project.api.roles import INGEST, OPERATOR, VIEWER


def client_for(username: str, *roles: str) -> APIClient:
    user = get_user_model().objects.create_user(username)
    for role in roles:
        user.groups.add(Group.objects.get(name=role))
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    client.user = user
    return client


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
