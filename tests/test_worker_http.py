"""The worker against the HTTP execution API: a real HTTP server on 127.0.0.1, no patching."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest

from decisions.engine import run_decision_cycle
from execution.keys import client_order_id_for
from execution.models import Order
from execution.worker import process_order, reconcile_order
from portfolio.models import Commitment, Pool
from tests import factories
from tests.broker_server import FakeBroker

SYMBOL = "HTTPX"


@pytest.fixture
def broker(settings):
    with FakeBroker(prices={SYMBOL: "101.25"}) as server:
        yield server.configure(settings, timeout=1)


@pytest.fixture
def queued_order(db, session_now, broker) -> Order:
    pool = factories.make_pool(now=session_now)
    Pool.objects.filter(pk=pool.pk).update(adapter="http")
    factories.add_bars(SYMBOL, session_now)
    factories.make_recommendation(SYMBOL, session_now)
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    return Order.objects.get(pool=pool)


def _wait_until_stored(broker, client_order_id: str, seconds: float = 10.0) -> None:
    """The delayed request lands at the broker after the client gave up on it."""
    deadline = time.monotonic() + seconds
    while client_order_id not in broker.orders:
        assert time.monotonic() < deadline, "the broker never stored the delayed order"
        time.sleep(0.05)


def _posts(broker) -> list:
    return [r for r in broker.received if r.method == "POST"]


def test_fill_through_the_http_api_opens_the_commitment(queued_order, broker, session_now):
    result = process_order(queued_order.pk, session_now)

    assert result.status == "filled"
    order = Order.objects.get(pk=queued_order.pk)
    assert order.fill_value == Decimal("101.25")
    assert order.broker_order_id
    (post,) = _posts(broker)
    assert post.body["client_order_id"] == client_order_id_for(order.idempotency_key)
    assert Decimal(post.body["qty"]) == order.quantity
    assert broker.secret_key not in str(order.response_payload)
    commitment = Commitment.objects.get(pool=order.pool)
    assert commitment.entry_value == Decimal("101.25") and commitment.units == order.quantity


def test_timeout_leaves_the_order_unknown_and_never_resubmits(queued_order, broker, session_now):
    broker.inject("delay", seconds=2, method="POST", path="/v2/orders")

    first = process_order(queued_order.pk, session_now)
    again = process_order(queued_order.pk, session_now)

    assert first.status == "unknown" and "timeout" in first.detail
    assert again.detail == "not claimable"
    assert len(_posts(broker)) == 1
    assert not Commitment.objects.exists()

    # The broker did accept it: reconciliation finds the fill and books it once.
    assert reconcile_order(queued_order.pk, session_now).detail == "not found at broker yet"
    _wait_until_stored(broker, client_order_id_for(queued_order.idempotency_key))
    settled = reconcile_order(queued_order.pk, session_now)
    assert settled.status == "filled"
    assert reconcile_order(queued_order.pk, session_now).detail == "nothing to reconcile"
    assert Commitment.objects.get().units == queued_order.quantity
    assert len(_posts(broker)) == 1


def test_server_error_after_accepting_is_settled_by_lookup(queued_order, broker, session_now):
    broker.inject("accept_then_fail", status=503, method="POST", path="/v2/orders")

    assert process_order(queued_order.pk, session_now).status == "unknown"
    assert reconcile_order(queued_order.pk, session_now).status == "filled"
    assert len(_posts(broker)) == 1


def test_order_the_broker_never_saw_is_queued_again_under_the_same_id(
    queued_order, broker, session_now
):
    broker.inject("respond", status=503, method="POST", path="/v2/orders")

    assert process_order(queued_order.pk, session_now).status == "unknown"
    # Too early to conclude: the request may still be on its way.
    assert reconcile_order(queued_order.pk, session_now).detail == "not found at broker yet"
    later = session_now + timedelta(minutes=3)
    assert reconcile_order(queued_order.pk, later).status == "queued"
    assert process_order(queued_order.pk, later).status == "filled"

    posts = _posts(broker)
    assert len(posts) == 2
    assert posts[0].body["client_order_id"] == posts[1].body["client_order_id"]
    assert Commitment.objects.get().units == queued_order.quantity


def test_broker_rejection_is_stored_and_opens_nothing(queued_order, broker, session_now):
    broker.set_price(SYMBOL, None)  # the broker no longer knows the symbol: 422

    result = process_order(queued_order.pk, session_now)

    assert result.status == "rejected"
    assert Order.objects.get(pk=queued_order.pk).response_payload["http_status"] == 422
    assert not Commitment.objects.exists()


def test_rate_limited_order_is_queued_again_not_resubmitted_at_once(
    queued_order, broker, session_now
):
    broker.inject("respond", status=429, method="POST", path="/v2/orders")

    result = process_order(queued_order.pk, session_now)
    again = process_order(queued_order.pk, session_now)

    # Not sent (a 429 is never executed): queued, with a retry time, not claimed before it.
    assert result.status == "queued" and result.detail.startswith("rate_limited")
    order = Order.objects.get(pk=queued_order.pk)
    assert order.status == "queued" and order.retry_not_before is not None
    assert again.status == "queued" and again.detail == "not claimable"
    assert len(_posts(broker)) == 1


def test_reconcile_orders_command_settles_what_the_broker_knows(queued_order, broker, session_now):
    import io

    from django.core.management import call_command

    broker.inject("accept_then_fail", status=503, method="POST", path="/v2/orders")
    assert process_order(queued_order.pk, session_now).status == "unknown"
    out = io.StringIO()

    call_command("reconcile_orders", stdout=out)

    assert f"order {queued_order.pk}: filled" in out.getvalue()
    assert Commitment.objects.get().units == queued_order.quantity
    out = io.StringIO()
    call_command("reconcile_orders", stdout=out)
    assert out.getvalue().strip() == "Nothing to reconcile."
