"""Reconciliation events over the API: listed for readers, acknowledged by an operator through
the audited action (via="api", the user as actor), and counted in ``/metrics``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from execution.reconciliation import reconcile_positions
from portfolio.actions import acknowledge_reconciliation
from portfolio.models import OperatorAction, Pool, ReconciliationEvent
from portfolio.selectors import reconciliation_holds
from tests import factories
from tests.api.test_metrics import labels, scrape
from tests.broker_server import FakeBroker

LIST = "/api/v1/reconciliation-events/"
HELD = "APIRC"


def acknowledge_url(pk) -> str:
    return f"{LIST}{pk}/acknowledge/"


@pytest.fixture
def broker(settings):
    """An account holding 4 APIRC and 2 of a symbol the books never bought."""
    with FakeBroker(prices={HELD: "10"}, cash="100000") as server:
        server.set_position(HELD, "4", "10")
        server.set_position("STRAY", "2", "5")
        yield server.configure(settings, timeout=2)


@pytest.fixture
def differing(db, session_now, broker) -> Pool:
    """The only pool on the execution API, holding nothing: two units events, open."""
    pool = factories.make_pool(now=session_now, name="api-recon")
    Pool.objects.filter(pk=pool.pk).update(adapter="http")
    pool = Pool.objects.get(pk=pool.pk)
    reconcile_positions(pool, session_now)
    assert ReconciliationEvent.objects.filter(pool=pool, status="open").count() == 2
    return pool


def event_of(pool: Pool, symbol: str) -> ReconciliationEvent:
    return ReconciliationEvent.objects.get(pool=pool, symbol=symbol)


def test_readers_list_the_events_newest_first_with_their_values(viewer, differing, session_now):
    stray = event_of(differing, "STRAY")
    acknowledge_reconciliation(stray, actor="ops", reason="known", now=session_now)
    later = session_now + timedelta(minutes=1)
    other = factories.make_pool(now=session_now, name="other")
    ReconciliationEvent.objects.create(
        pool=other,
        subject="cash",
        books_value=1,
        broker_value=2,
        first_seen_at=later,
        last_seen_at=later,
    )

    response = viewer.get(LIST)

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [row["pool"] for row in rows][0] == "other"
    held = next(row for row in rows if row["symbol"] == HELD)
    assert held["subject"] == "units" and held["status"] == "open"
    assert (held["books_value"], held["broker_value"], held["difference"]) == (
        "0.000000000",
        "4.000000000",
        "4.000000000",
    )
    assert held["first_seen_at"] == "2026-11-18T16:00:00Z" and held["seen_count"] == 1
    assert held["acknowledged_by"] == "" and held["agreed_at"] is None


@pytest.mark.parametrize(
    ("params", "symbols"),
    [
        ({"pool": "api-recon"}, {HELD, "STRAY"}),
        ({"pool": "api-recon", "status": "open"}, {HELD}),
        ({"status": "acknowledged"}, {"STRAY"}),
        ({"entity": "STRAY"}, {"STRAY"}),
        ({"pool": "nobody"}, set()),
    ],
)
def test_the_list_filters_by_pool_and_status(viewer, differing, session_now, params, symbols):
    acknowledge_reconciliation(
        event_of(differing, "STRAY"), actor="ops", reason="known", now=session_now
    )

    response = viewer.get(LIST, params)

    assert response.status_code == 200
    assert {row["symbol"] for row in response.json()["results"]} == symbols


def test_an_invalid_status_is_a_400(viewer, differing):
    response = viewer.get(LIST, {"status": "closed"})

    assert response.status_code == 400 and "status" in response.json()["errors"]


def test_an_operator_acknowledges_and_the_hold_lifts(operator, differing):
    event = event_of(differing, HELD)

    response = operator.post(acknowledge_url(event.pk), {"reason": "bought by hand"}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    row = OperatorAction.objects.get(action="acknowledge_reconciliation")
    assert body["changed"] is True and body["action"]["id"] == row.pk
    assert (row.actor, row.reason, row.via, row.pool) == (
        "operator-1",
        "bought by hand",
        "api",
        differing,
    )
    event.refresh_from_db()
    assert (event.status, event.acknowledged_by) == ("acknowledged", "operator-1")
    assert reconciliation_holds(differing) == frozenset({"STRAY"})


def test_acknowledging_twice_is_a_400_that_says_by_whom(operator, differing):
    event = event_of(differing, HELD)
    first = operator.post(acknowledge_url(event.pk), {"reason": "a"}, format="json")
    assert first.status_code == 200

    response = operator.post(acknowledge_url(event.pk), {"reason": "b"}, format="json")

    assert response.status_code == 400
    assert "already acknowledged by operator-1" in response.json()["errors"]["event"][0]
    assert OperatorAction.objects.filter(action="acknowledge_reconciliation").count() == 1


def test_a_reason_is_required(operator, differing):
    event = event_of(differing, HELD)

    response = operator.post(acknowledge_url(event.pk), {}, format="json")

    assert response.status_code == 400 and "reason" in response.json()["errors"]
    event.refresh_from_db()
    assert event.status == "open"


@pytest.mark.parametrize("pk", ["999999", "abc", "0", str(2**64)])
def test_an_unknown_event_is_a_json_404(operator, differing, pk):
    response = operator.post(acknowledge_url(pk), {"reason": "x"}, format="json")

    assert response.status_code == 404
    assert set(response.json()) == {"detail", "errors"}


def test_only_an_operator_acknowledges(viewer, ingest, differing):
    event = event_of(differing, HELD)

    for client in (viewer, ingest):
        response = client.post(acknowledge_url(event.pk), {"reason": "x"}, format="json")
        assert response.status_code == 403
    assert ingest.get(LIST).status_code == 403
    event.refresh_from_db()
    assert event.status == "open"


def test_metrics_count_the_open_events_per_pool(viewer, differing, session_now):
    factories.make_pool(now=session_now, name="quiet")

    samples = scrape(viewer)["engine_reconciliation_open_events"]

    assert samples[labels(pool="api-recon")] == 2
    assert samples[labels(pool="quiet")] == 0
    acknowledge_reconciliation(
        event_of(differing, HELD), actor="ops", reason="seen", now=session_now
    )
    assert scrape(viewer)["engine_reconciliation_open_events"][labels(pool="api-recon")] == 1
