"""GET /api/v1/operator-actions/: who did what to which pool, before → after, and why."""

from __future__ import annotations

from datetime import timedelta

from portfolio.actions import halt_pool, resume_pool
from portfolio.models import OperatorAction
from tests import factories
from tests.api.conftest import count_queries, walk

URL = "/api/v1/operator-actions/"


def ids(client, **params) -> set:
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def halt_and_resume(pool, now, times: int) -> None:
    """``times`` halts and resumes, a minute apart, through the audited actions."""
    for i in range(times):
        at = now + timedelta(minutes=2 * i + 1)
        halt_pool(pool, actor="alice", reason="test halt", now=at, via="api")
        resume_pool(pool, actor="bob", reason="test resume", now=at + timedelta(minutes=1))


def test_viewer_reads_operator_actions(viewer, pool, session_now):
    halt_and_resume(pool, session_now, 1)

    response = viewer.get(URL)

    assert response.status_code == 200
    resume, halt, create = response.json()["results"]
    assert (halt["action"], halt["actor"], halt["reason"]) == ("halt", "alice", "test halt")
    assert halt["pool"] == pool.name and halt["via"] == "api"
    assert halt["before"] != halt["after"] and halt["created_at"] == "2026-11-18T16:01:00Z"
    assert (resume["action"], create["action"]) == ("resume", "create_pool")


def test_filters_by_pool_action_actor_and_time(viewer, pool, session_now):
    halt_and_resume(pool, session_now, 2)
    factories.make_pool(now=session_now, name="b")
    halts = set(OperatorAction.objects.filter(action="halt").values_list("id", flat=True))

    assert len(ids(viewer, pool=pool.name)) == 5 and len(ids(viewer, pool="b")) == 1
    assert ids(viewer, action="halt") == ids(viewer, actor="alice") == halts
    assert len(ids(viewer, created_after="2026-11-18T16:02:00Z")) == 3
    assert len(ids(viewer, created_before="2026-11-18T16:01:00Z")) == 2
    assert viewer.get(URL, {"action": "delete_pool"}).status_code == 400


def test_pages_follow_next_to_the_end_without_repeats_or_gaps(viewer, pool, session_now):
    halt_and_resume(pool, session_now, 6)

    seen = walk(viewer, URL, page_size=5)

    assert len(seen) == len(set(seen)) == 13
    assert set(seen) == set(OperatorAction.objects.values_list("id", flat=True))


def test_query_count_does_not_grow_with_the_page_size(viewer, pool, session_now):
    halt_and_resume(pool, session_now, 30)

    assert count_queries(viewer, URL, page_size=5) == count_queries(viewer, URL, page_size=50)


def test_operator_actions_are_read_only_and_need_a_reading_role(
    viewer, operator, ingest, anonymous, db
):
    assert operator.post(URL, {}, format="json").status_code == 405
    assert viewer.get(URL).status_code == 200
    assert ingest.get(URL).status_code == 403
    assert anonymous.get(URL).status_code == 401
