"""The role matrix: anonymous / no role / viewer / operator / ingest × every endpoint and method.

The endpoints are read from the OpenAPI schema itself, so a new endpoint joins the matrix
without anyone remembering to add it. Each request carries an empty or minimal body: a role
that may call the endpoint gets past authentication and permission (a 2xx, or a 400/404/405/409
about the body or the object), a role that may not gets 401 (anonymous) or 403.
"""

from __future__ import annotations

import re

import pytest
from drf_spectacular.generators import SchemaGenerator

from tests import factories

PUBLIC = {"/healthz"}
INGEST_RESOURCES = ("recommendations", "market-snapshots", "entities", "performance-reports")
CONTROL_SUFFIXES = ("halt", "resume", "clear-breaker", "risk-tier", "run-cycle", "engine-config")
CONTROL_SUFFIXES += ("risk-limits", "acknowledge")


def operations() -> list[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    found = []
    for path, item in schema["paths"].items():
        for method in item:
            if method in {"get", "post", "put", "patch", "delete"}:
                found.append((path, method))
    return sorted(found)


def category(path: str, method: str) -> str:
    parts = [p for p in path.split("/") if p]
    if path in PUBLIC:
        return "public"
    if parts[-1] in CONTROL_SUFFIXES:
        return "control"
    if parts[-1] == "metrics":
        return "read"
    if len(parts) >= 3 and parts[2] in INGEST_RESOURCES and parts[-1] != "explain":
        return "ingest-write" if method != "get" else "ingest-read"
    return "read"


ALLOWED = {
    # role: categories it may call
    "anonymous": {"public"},
    "no_role": {"public"},
    "viewer": {"public", "read", "ingest-read"},
    "ingest": {"public", "ingest-read", "ingest-write"},
    "operator": {"public", "read", "ingest-read", "ingest-write", "control"},
}


def concrete(path: str, pool_name: str) -> str:
    """A path with its parameters filled: a real pool name, made-up ids elsewhere."""
    path = path.replace("{name}", pool_name)
    return re.sub(r"\{[^}]+\}", "1", path)


def test_the_schema_lists_every_part_of_the_api():
    paths = {path for path, _ in operations()}
    assert "/healthz" in paths
    assert any(p.endswith("/halt/") for p in paths)
    assert "/api/v1/recommendations/" in paths
    assert any(p.startswith("/api/v1/decisions/") for p in paths)


@pytest.mark.parametrize(("path", "method"), operations())
@pytest.mark.parametrize("role", sorted(ALLOWED))
def test_role_matrix(request, db, cluster, session_now, role, path, method):
    pool = factories.make_pool(now=session_now, name="matrix")
    client = request.getfixturevalue(role)
    url = concrete(path, pool.name)

    response = getattr(client, method)(url, {}, format="json")

    kind = category(path, method)
    if kind in ALLOWED[role]:
        assert response.status_code not in (401, 403), (role, method, url, response.content[:300])
        # /healthz may say 503 about a part that is down; nothing else may fail.
        assert response.status_code < 500 or (path in PUBLIC and response.status_code == 503)
    elif role == "anonymous":
        assert response.status_code == 401, (method, url, response.status_code)
    else:
        assert response.status_code == 403, (role, method, url, response.status_code)


READ_ONLY_PATHS = sorted(
    {path for path, method in operations() if category(path, method) == "read"}
    - {path for path, method in operations() if method != "get"}
)


@pytest.mark.parametrize("path", READ_ONLY_PATHS)
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_a_viewer_gets_403_on_every_write_and_an_operator_405(
    viewer, operator, session_now, path, method
):
    pool = factories.make_pool(now=session_now, name="matrix")
    url = concrete(path, pool.name)

    assert getattr(viewer, method)(url, {}, format="json").status_code == 403
    assert getattr(operator, method)(url, {}, format="json").status_code == 405
