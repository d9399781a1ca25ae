"""``create_service_account`` and ``drf_create_token``: a token that works, in one role."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient


def create(name: str, role: str, *extra: str) -> str:
    out = StringIO()
    call_command(
        "create_service_account", name, "--role", role, *extra, stdout=out, stderr=StringIO()
    )
    return out.getvalue().strip()


def client(token: str) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return c


@pytest.mark.django_db
def test_a_viewer_account_reads_and_may_not_write():
    token = create("dashboards", "viewer")

    assert client(token).get("/api/v1/decisions/").status_code == 200
    assert client(token).post("/api/v1/recommendations/", {}, format="json").status_code == 403
    user = get_user_model().objects.get(username="dashboards")
    assert not user.has_usable_password()


@pytest.mark.django_db
def test_an_ingest_account_writes_recommendations_but_reads_no_audit():
    token = create("upstream", "ingest")

    assert client(token).get("/api/v1/recommendations/").status_code == 200
    assert client(token).get("/api/v1/decisions/").status_code == 403


@pytest.mark.django_db
def test_running_it_again_keeps_the_token_and_rotate_replaces_it():
    first = create("ops-bot", "operator")
    again = create("ops-bot", "operator")
    rotated = create("ops-bot", "operator", "--rotate")

    assert first == again != rotated
    assert client(first).get("/api/v1/pools/").status_code == 401
    assert client(rotated).get("/api/v1/pools/").status_code == 200


@pytest.mark.django_db
def test_an_unknown_role_is_refused():
    with pytest.raises(CommandError, match="invalid choice"):
        create("someone", "admin")


@pytest.mark.django_db
def test_drf_create_token_gives_an_existing_user_a_working_token():
    user = get_user_model().objects.create_user("alice")
    call_command(
        "create_service_account", "alice", "--role", "viewer", stdout=StringIO(), stderr=StringIO()
    )
    out = StringIO()
    call_command("drf_create_token", "alice", "-r", stdout=out)
    token = out.getvalue().split()[2]

    assert client(token).get("/api/v1/operator-actions/").status_code == 200
    assert user.groups.filter(name="viewer").exists()
