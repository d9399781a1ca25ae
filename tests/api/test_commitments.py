"""GET /api/v1/commitments/ and /api/v1/commitments/{id}/: positions and their levels."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from decisions.engine import run_decision_cycle
from execution.worker import drain_queued_orders
from portfolio.models import Commitment
from tests import factories
from tests.api.conftest import count_queries, walk

URL = "/api/v1/commitments/"


def add_closed(pool, now, count: int) -> list[Commitment]:
    """``count`` closed commitments, one per hour back from ``now``."""
    factories.make_entity("OLD")
    return Commitment.objects.bulk_create(
        Commitment(
            pool=pool,
            entity_id="OLD",
            status="closed",
            units=Decimal("0"),
            entry_value=Decimal("10"),
            entry_cost=Decimal("100"),
            risk_tier="moderate",
            opened_at=now - timedelta(hours=i + 1),
            closed_at=now - timedelta(hours=i),
            exit_value=Decimal("11"),
            realized_gain=Decimal("10"),
        )
        for i in range(count)
    )


@pytest.fixture
def held(pool, session_now) -> Commitment:
    factories.add_bars("AAA", session_now)
    factories.make_recommendation("AAA", session_now, confidence="0.80")
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    drain_queued_orders(pool, session_now)
    return Commitment.objects.get(pool=pool)


def test_viewer_reads_commitments_with_their_levels(viewer, held):
    response = viewer.get(URL)

    assert response.status_code == 200
    (row,) = response.json()["results"]
    assert row["entity"] == "AAA" and row["status"] == "open"
    assert Decimal(row["risk_threshold"]) == held.risk_threshold
    assert Decimal(row["gain_target"]) == held.gain_target
    assert row["units"] == f"{held.units:.4f}"
    assert row["closed_at"] is None and row["opened_at"] == "2026-11-18T16:00:00Z"


def test_operator_reads_one_commitment(operator, held):
    response = operator.get(f"{URL}{held.pk}/")

    assert response.status_code == 200 and response.json()["pool"] == held.pool.name
    assert operator.get(f"{URL}{held.pk + 1000}/").status_code == 404


def test_filters_by_pool_entity_status_and_time(viewer, held, pool, session_now):
    other = factories.make_pool(now=session_now, name="other-pool")
    closed = {c.pk for c in add_closed(other, session_now, 3)}

    def ids(**params):
        response = viewer.get(URL, params)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids(pool="other-pool") == closed
    assert ids(pool=pool.name) == ids(entity="AAA") == ids(status="open") == {held.pk}
    assert ids(status="closed") == closed
    assert ids(opened_after="2026-11-18T15:30:00Z") == {held.pk}
    assert len(ids(opened_before="2026-11-18T14:30:00Z")) == 2
    assert len(ids(closed_after="2026-11-18T15:00:00Z")) == 2
    assert viewer.get(URL, {"status": "gone"}).status_code == 400
    assert viewer.get(URL, {"closed_before": "10am"}).status_code == 400


def test_pages_follow_next_to_the_end_without_repeats_or_gaps(viewer, pool, session_now):
    add_closed(pool, session_now, 13)

    ids = walk(viewer, URL, page_size=4)

    assert len(ids) == len(set(ids)) == 13
    assert set(ids) == set(Commitment.objects.values_list("id", flat=True))


def test_query_count_does_not_grow_with_the_page_size(viewer, pool, session_now):
    add_closed(pool, session_now, 60)

    assert count_queries(viewer, URL, page_size=5) == count_queries(viewer, URL, page_size=50)


def test_commitments_are_read_only_and_need_a_reading_role(viewer, ingest, anonymous, held):
    assert viewer.post(URL, {}, format="json").status_code == 403
    assert viewer.delete(f"{URL}{held.pk}/").status_code == 403
    assert ingest.get(URL).status_code == 403
    assert anonymous.get(URL).status_code == 401
