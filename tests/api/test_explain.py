"""GET /api/v1/recommendations/{id}/explain/: the whole chain of one recommendation."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from decisions.engine import run_decision_cycle
from execution.models import Order
from execution.worker import drain_queued_orders
from portfolio.models import Fill, MarketSnapshot
from tests import factories


def url(rec_id: str) -> str:
    return f"/api/v1/recommendations/{quote(rec_id, safe='')}/explain/"


def trade(pools, now, rec_id: str):
    """One act recommendation decided and filled by every pool of ``pools``."""
    if not MarketSnapshot.objects.filter(entity_id="AAA").exists():
        factories.add_bars("AAA", now)
    rec = factories.make_recommendation("AAA", now, confidence="0.80", rec_id=rec_id)
    for pool in pools:
        run_decision_cycle(pool.pk, now, dispatch=False)
        drain_queued_orders(pool, now)
    return rec


def test_explain_gives_each_pools_decision_orders_evaluations_fills_and_commitment(
    viewer, pool, session_now
):
    other = factories.make_pool(now=session_now, name="other-pool")
    rec = trade([pool, other], session_now, "rec-explain-1")

    response = viewer.get(url(rec.pk))

    assert response.status_code == 200
    body = response.json()
    assert body["recommendation"]["id"] == rec.pk
    assert body["recommendation"]["confidence"] == "0.80000"
    assert body["other_orders"] == []
    assert sorted(d["pool"] for d in body["decisions"]) == sorted([pool.name, "other-pool"])
    for decision in body["decisions"]:
        assert decision["outcome"] == "act" and decision["decision_trace"]["checks"]
        (order,) = decision["orders"]
        stored = Order.objects.get(pk=order["id"])
        assert order["status"] == "filled" and order["status_reason"] == stored.status_reason
        assert order["response_payload"] == stored.response_payload
        assert order["risk_evaluations"][0]["passed"] is True
        (fill,) = order["fills"]
        booked = Fill.objects.get(order=stored)
        assert fill["id"] == booked.pk and fill["units"] == f"{booked.units:.4f}"
        commitment = fill["commitment"]
        assert commitment["id"] == booked.commitment_id and commitment["status"] == "open"
        assert commitment["pool"] == decision["pool"] and commitment["risk_threshold"]


def test_a_skipped_recommendation_explains_its_skip(operator, pool, session_now):
    factories.add_bars("BBB", session_now)
    rec = factories.make_recommendation("BBB", session_now, confidence="0.10")
    run_decision_cycle(pool.pk, session_now, dispatch=False)

    body = operator.get(url(rec.pk)).json()

    (decision,) = body["decisions"]
    assert decision["skip_reason"] == "insufficient_confidence" and decision["orders"] == []


@pytest.mark.parametrize("rec_id", ["up/stream:42", "with space & ünïcode?", "x" * 64])
def test_any_upstream_id_can_be_explained(viewer, pool, session_now, rec_id):
    rec = trade([pool], session_now, rec_id)

    response = viewer.get(url(rec_id))

    assert response.status_code == 200
    assert response.json()["recommendation"]["id"] == rec.pk


@pytest.mark.parametrize("rec_id", ["missing", "x" * 65, "nul\x00byte"])
def test_an_unknown_recommendation_is_a_json_404(viewer, db, rec_id):
    response = viewer.get(url(rec_id))

    assert response.status_code == 404
    assert set(response.json()) == {"detail", "errors"}


def test_query_count_does_not_grow_with_the_chain(viewer, session_now, db):
    one = trade([factories.make_pool(now=session_now)], session_now, "rec-one")
    pools = [factories.make_pool(now=session_now) for _ in range(3)]
    three = trade(pools, session_now, "rec-three")

    def queries(rec_id):
        with CaptureQueriesContext(connection) as captured:
            assert viewer.get(url(rec_id)).status_code == 200
        return len(captured.captured_queries)

    assert queries(one.pk) == queries(three.pk)


def test_explain_is_read_only_and_needs_a_reading_role(
    viewer, ingest, anonymous, pool, session_now
):
    rec = trade([pool], session_now, "rec-roles")

    assert viewer.post(url(rec.pk), {}, format="json").status_code == 403
    assert ingest.get(url(rec.pk)).status_code == 403
    assert anonymous.get(url(rec.pk)).status_code == 401
