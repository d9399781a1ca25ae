"""GET /api/v1/orders/ and /api/v1/orders/{id}/: orders, broker answers, risk evaluations."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from decisions.engine import run_decision_cycle
from execution.dispatch import queued_order
from execution.models import Order, RiskEvaluation
from execution.worker import drain_queued_orders
from tests import factories
from tests.api.conftest import count_queries, walk

URL = "/api/v1/orders/"


def add_orders(pool, now, count: int, *, status: str = "queued") -> list[Order]:
    """``count`` orders as the loops queue them, each with one stored risk evaluation."""
    factories.make_entity("VOL")
    orders = Order.objects.bulk_create(
        queued_order(
            pool=pool,
            entity_id="VOL",
            action="defer",
            side="sell",
            reason="rebalance",
            quantity=Decimal(i + 1),
            estimated_value=Decimal("10"),
            reference=f"test:{pool.pk}:{i}",
            now=now + timedelta(seconds=i % 3),
            status=status,
        )
        for i in range(count)
    )
    RiskEvaluation.objects.bulk_create(
        RiskEvaluation(order=o, pool=pool, passed=True, checks=[], evaluated_at=now) for o in orders
    )
    return orders


@pytest.fixture
def traded(pool, session_now):
    """One entry filled by the paper broker, through the engine and the worker."""
    factories.add_bars("AAA", session_now)
    factories.make_recommendation("AAA", session_now, confidence="0.80")
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    drain_queued_orders(pool, session_now)
    return Order.objects.get(pool=pool)


def test_viewer_reads_orders_with_broker_answers_and_risk_evaluations(viewer, traded):
    response = viewer.get(URL)

    assert response.status_code == 200
    (row,) = response.json()["results"]
    assert row["id"] == traded.pk and row["status"] == "filled" and row["side"] == "buy"
    assert row["quantity"] == f"{traded.quantity:.4f}" and isinstance(row["fill_value"], str)
    assert row["response_payload"] == traded.response_payload
    assert row["decision"] == traded.decision_id and row["recommendation"]
    (evaluation,) = row["risk_evaluations"]
    assert evaluation["passed"] is True and evaluation["checks"]
    assert evaluation["evaluated_at"].endswith("Z")


def test_operator_reads_one_order_with_its_risk_evaluations(operator, traded):
    response = operator.get(f"{URL}{traded.pk}/")

    assert response.status_code == 200
    assert response.json()["idempotency_key"] == traded.idempotency_key
    assert len(response.json()["risk_evaluations"]) == 1


def test_an_unknown_order_is_a_404(viewer, db):
    assert viewer.get(f"{URL}424242/").status_code == 404
    assert viewer.get(f"{URL}abc/").json()["errors"] == {}


def test_filters_by_pool_entity_status_and_time(viewer, traded, pool, session_now):
    other = factories.make_pool(now=session_now, name="other-pool")
    add_orders(other, session_now + timedelta(minutes=10), 2)

    def ids(**params):
        response = viewer.get(URL, params)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    queued = set(Order.objects.filter(pool=other).values_list("id", flat=True))
    assert ids(pool="other-pool") == queued
    assert ids(pool=pool.name) == {traded.pk}
    assert ids(entity="AAA") == {traded.pk}
    assert ids(status="filled") == {traded.pk}
    assert ids(status="queued") == queued
    assert ids(side="sell", reason="rebalance") == queued
    assert ids(created_after="2026-11-18T16:05:00Z") == queued
    assert ids(created_before="2026-11-18T16:05:00Z") == {traded.pk}
    assert ids(decision=traded.decision_id) == {traded.pk}


@pytest.mark.parametrize(
    "params", [{"status": "lost"}, {"created_after": "soon"}, {"decision": "first"}]
)
def test_a_bad_filter_is_a_400(viewer, db, params):
    response = viewer.get(URL, params)

    assert response.status_code == 400
    assert list(response.json()["errors"]) == list(params)


def test_pages_follow_next_to_the_end_without_repeats_or_gaps(viewer, pool, session_now):
    add_orders(pool, session_now, 17)

    ids = walk(viewer, URL, page_size=4)

    assert len(ids) == len(set(ids)) == 17
    assert set(ids) == set(Order.objects.values_list("id", flat=True))


def test_query_count_does_not_grow_with_the_page_size(viewer, pool, session_now):
    add_orders(pool, session_now, 60)

    assert count_queries(viewer, URL, page_size=5) == count_queries(viewer, URL, page_size=50)


def test_orders_are_read_only_for_readers(viewer, traded):
    assert viewer.post(URL, {}, format="json").status_code == 403
    assert viewer.put(f"{URL}{traded.pk}/", {}, format="json").status_code == 403


def test_ingest_only_gets_403_and_anonymous_401(ingest, anonymous, traded):
    assert ingest.get(URL).status_code == 403
    assert ingest.get(f"{URL}{traded.pk}/").status_code == 403
    assert anonymous.get(URL).status_code == 401
