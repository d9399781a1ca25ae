"""GET /api/v1/fills/: every fill booked into the books."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from decisions.engine import run_decision_cycle
from execution.worker import drain_queued_orders
from portfolio.models import Fill
from tests import factories
from tests.api.conftest import count_queries, walk

URL = "/api/v1/fills/"


def add_fills(pool, now, count: int) -> list[Fill]:
    """``count`` sells without an order, one a minute back from ``now``."""
    factories.make_entity("OLD")
    return Fill.objects.bulk_create(
        Fill(
            pool=pool,
            entity_id="OLD",
            side="sell",
            units=Decimal("1"),
            value=Decimal("10"),
            order_filled_quantity=Decimal("1"),
            booked_at=now - timedelta(minutes=i),
        )
        for i in range(count)
    )


@pytest.fixture
def filled(pool, session_now) -> Fill:
    factories.add_bars("AAA", session_now)
    factories.make_recommendation("AAA", session_now, confidence="0.80")
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    drain_queued_orders(pool, session_now)
    return Fill.objects.get(pool=pool)


def test_viewer_reads_fills(viewer, filled):
    response = viewer.get(URL)

    assert response.status_code == 200
    (row,) = response.json()["results"]
    assert row["id"] == filled.pk and row["side"] == "buy" and row["entity"] == "AAA"
    assert row["order"] == filled.order_id and row["commitment"] == filled.commitment_id
    assert row["value"] == f"{filled.value:.4f}" and row["booked_at"].endswith("Z")


def test_filters_by_pool_entity_side_order_and_time(viewer, filled, pool, session_now):
    other = factories.make_pool(now=session_now, name="other-pool")
    sells = {f.pk for f in add_fills(other, session_now - timedelta(hours=1), 3)}

    def ids(**params):
        response = viewer.get(URL, params)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids(pool="other-pool") == ids(side="sell") == ids(entity="OLD") == sells
    assert ids(pool=pool.name) == ids(order=filled.order_id) == {filled.pk}
    assert ids(commitment=filled.commitment_id) == {filled.pk}
    assert ids(booked_after="2026-11-18T15:30:00Z") == {filled.pk}
    assert ids(booked_before="2026-11-18T15:30:00Z") == sells
    assert viewer.get(URL, {"side": "short"}).status_code == 400
    assert viewer.get(URL, {"booked_after": "2026-11-18T25:00:00Z"}).status_code == 400


def test_pages_follow_next_to_the_end_without_repeats_or_gaps(viewer, pool, session_now):
    add_fills(pool, session_now, 11)

    ids = walk(viewer, URL, page_size=3)

    assert len(ids) == len(set(ids)) == 11
    assert set(ids) == set(Fill.objects.values_list("id", flat=True))


def test_query_count_does_not_grow_with_the_page_size(viewer, pool, session_now):
    add_fills(pool, session_now, 60)

    assert count_queries(viewer, URL, page_size=5) == count_queries(viewer, URL, page_size=50)


def test_fills_are_read_only_and_need_a_reading_role(viewer, operator, ingest, anonymous, db):
    assert viewer.post(URL, {}, format="json").status_code == 403
    assert operator.get(URL).status_code == 200
    assert ingest.get(URL).status_code == 403
    assert anonymous.get(URL).status_code == 401
