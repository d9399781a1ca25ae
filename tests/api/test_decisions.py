"""GET /api/v1/decisions/ and /api/v1/decisions/{id}/: every evaluation with its trace."""

from __future__ import annotations

from datetime import timedelta

import pytest

from decisions.engine import run_decision_cycle
from decisions.models import DecisionRecord
from execution.worker import drain_queued_orders
from tests import factories
from tests.api.conftest import count_queries, walk

URL = "/api/v1/decisions/"


def decide(pool, now, *, acts=(), skips=()):
    """One decision cycle over act (confidence 0.80) and low-confidence recommendations."""
    for symbol in {*acts, *skips}:
        if not DecisionRecord.objects.filter(entity_id=symbol).exists():
            factories.add_bars(symbol, now)
    recs = [factories.make_recommendation(s, now, confidence="0.80") for s in acts]
    recs += [factories.make_recommendation(s, now, confidence="0.10") for s in skips]
    run_decision_cycle(pool.pk, now, dispatch=False)
    drain_queued_orders(pool, now)
    return recs


@pytest.fixture
def decided(pool, session_now):
    decide(pool, session_now, acts=["AAA"], skips=["BBB"])
    return pool


def test_viewer_reads_decisions_with_their_trace(viewer, decided):
    response = viewer.get(URL)

    assert response.status_code == 200
    rows = {row["entity"]: row for row in response.json()["results"]}
    act, skip = rows["AAA"], rows["BBB"]
    assert act["outcome"] == "act" and act["pool"] == decided.name and act["processed"]
    assert act["decision_trace"]["checks"][0]["check"] == "circuit_breaker"
    assert isinstance(act["units"], str) and isinstance(act["commitment_value"], str)
    assert act["evaluated_at"] == "2026-11-18T16:00:00Z"
    assert (skip["outcome"], skip["skip_reason"]) == ("skip", "insufficient_confidence")


def test_operator_reads_one_decision(operator, decided):
    decision = DecisionRecord.objects.get(entity_id="AAA")

    response = operator.get(f"{URL}{decision.pk}/")

    assert response.status_code == 200
    assert response.json()["id"] == decision.pk
    assert response.json()["decision_trace"] == decision.decision_trace


@pytest.mark.parametrize("path", ["999999/", "not-a-number/", "99999999999999999999999/"])
def test_an_unknown_decision_is_a_json_404(viewer, db, path):
    response = viewer.get(f"{URL}{path}")

    assert response.status_code == 404
    assert set(response.json()) == {"detail", "errors"}


def test_filters_by_pool_entity_outcome_reason_and_time(viewer, decided, session_now):
    other = factories.make_pool(now=session_now, name="other-pool")
    # Ten minutes later the other pool evaluates every recommendation, CCC's included.
    decide(other, session_now + timedelta(minutes=10), skips=["CCC"])
    mine, theirs = decided.name, "other-pool"

    def rows(**params):
        response = viewer.get(URL, params)
        assert response.status_code == 200, response.content
        return sorted((row["pool"], row["entity"]) for row in response.json()["results"])

    assert rows(pool=theirs) == [(theirs, "AAA"), (theirs, "BBB"), (theirs, "CCC")]
    assert rows(pool=mine) == [(mine, "AAA"), (mine, "BBB")]
    assert rows(entity="BBB") == [(theirs, "BBB"), (mine, "BBB")]
    assert rows(outcome="act", pool=mine) == [(mine, "AAA")]
    assert rows(skip_reason="insufficient_confidence", entity="CCC") == [(theirs, "CCC")]
    assert rows(evaluated_after="2026-11-18T16:05:00Z") == rows(pool=theirs)
    assert rows(evaluated_before="2026-11-18T16:05:00+00:00") == rows(pool=mine)
    assert len(rows(evaluated_after="2026-11-18T11:00:00-05:00")) == 5
    assert rows(evaluated_after="2026-11-18T16:00:00") == rows()  # no offset: UTC
    assert rows(pool="no-such-pool") == []


@pytest.mark.parametrize(
    "params",
    [
        {"evaluated_after": "yesterday"},
        {"evaluated_before": "2026-13-45T00:00:00Z"},
        {"outcome": "maybe"},
        {"skip_reason": "bad_luck"},
        {"entity": "A\x00"},
    ],
)
def test_a_bad_filter_is_a_400_in_the_error_shape(viewer, db, params):
    response = viewer.get(URL, params)

    assert response.status_code == 400
    assert response.json()["detail"] and response.json()["errors"]


@pytest.mark.parametrize("cursor", ["garbage", "cD1ub3QtYS10aW1l", "cD0xJm89MQ=="])
def test_a_bad_cursor_is_a_404(viewer, db, cursor):
    response = viewer.get(URL, {"cursor": cursor})

    assert response.status_code == 404
    assert set(response.json()) == {"detail", "errors"}


def test_pages_follow_next_to_the_end_without_repeats_or_gaps(viewer, pool, session_now):
    # One cycle writes every row at the same instant: the cursor must page through ties.
    decide(pool, session_now, skips=[f"S{i:02d}" for i in range(12)])
    decide(pool, session_now + timedelta(minutes=5), skips=[f"T{i:02d}" for i in range(11)])

    ids = walk(viewer, URL, page_size=5)

    assert len(ids) == len(set(ids)) == 23
    assert sorted(ids) == sorted(DecisionRecord.objects.values_list("id", flat=True))


def test_query_count_does_not_grow_with_the_page_size(viewer, pool, session_now):
    decide(pool, session_now, skips=[f"S{i:02d}" for i in range(30)])
    other = factories.make_pool(now=session_now)
    decide(other, session_now + timedelta(minutes=1), skips=[f"T{i:02d}" for i in range(30)])
    assert DecisionRecord.objects.count() > 50

    assert count_queries(viewer, URL, page_size=5) == count_queries(viewer, URL, page_size=50)


def test_decisions_are_read_only_for_readers(viewer, operator, decided):
    decision = DecisionRecord.objects.first()
    assert viewer.post(URL, {}, format="json").status_code == 403
    assert operator.delete(f"{URL}{decision.pk}/").status_code == 405
    assert viewer.patch(f"{URL}{decision.pk}/", {}, format="json").status_code == 403


def test_ingest_only_and_roleless_users_get_403_and_anonymous_401(ingest, no_role, anonymous, db):
    assert ingest.get(URL).status_code == 403
    assert no_role.get(URL).status_code == 403
    assert ingest.post(URL, {}, format="json").status_code == 403
    assert anonymous.get(URL).status_code == 401
