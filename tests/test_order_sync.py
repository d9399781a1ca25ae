"""The order status sync (``execution.sync``) against the test broker over HTTP: every fill
increment booked once as it arrives, a cancel that keeps the partial fill, a replacement
followed, and nothing booked twice."""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from execution.dispatch import queued_order
from execution.models import Order, OrderEvent, OrderStatus
from execution.sync import sync_order_status, sync_orders
from execution.tasks import reconcile_orders
from execution.worker import process_order
from portfolio.models import Commitment, Fill, Pool
from tests import factories
from tests.broker_server import FakeBroker, FillPolicy

SYMBOL = "SYNC"
PRICE = Decimal("50")


@pytest.fixture
def broker(settings):
    with FakeBroker(prices={SYMBOL: str(PRICE)}, rate_limit=None) as server:
        yield server.configure(settings, timeout=2)


@pytest.fixture
def order(db, session_now, broker) -> Order:
    pool = factories.make_pool(now=session_now)
    Pool.objects.filter(pk=pool.pk).update(adapter="http")
    factories.add_bars(SYMBOL, session_now, sessions=20)
    order = queued_order(
        pool=Pool.objects.get(pk=pool.pk),
        entity_id=SYMBOL,
        action="act",
        side="buy",
        reason="entry",
        quantity=Decimal("6"),
        estimated_value=PRICE,
        reference="sync-test",
        now=session_now,
    )
    order.save()
    return order


def _units(order: Order) -> Decimal:
    commitment = Commitment.objects.filter(pool=order.pool, entity_id=SYMBOL).first()
    return commitment.units if commitment else Decimal(0)


def _fills(order: Order) -> list[Decimal]:
    return list(
        Fill.objects.filter(order_id=order.pk)
        .order_by("order_filled_quantity")
        .values_list("units", flat=True)
    )


def test_fills_in_three_increments_are_booked_once_each_as_they_arrive(order, broker, session_now):
    broker.set_fill_policy(FillPolicy(mode="partial", step=2), symbol=SYMBOL)

    assert process_order(order.pk, session_now).status == OrderStatus.PARTIALLY_FILLED
    assert _units(order) == 2 and _fills(order) == [2]

    broker.advance(order.client_order_id)
    assert sync_order_status(order.pk, session_now).status == OrderStatus.PARTIALLY_FILLED
    assert _units(order) == 4 and _fills(order) == [2, 2]

    broker.advance(order.client_order_id)
    results = sync_orders(session_now)
    assert [r.status for r in results] == [OrderStatus.FILLED]
    assert _units(order) == 6 and _fills(order) == [2, 2, 2]

    # Run again: nothing left to sync, nothing booked twice.
    assert sync_orders(session_now) == []
    assert sync_order_status(order.pk, session_now).detail == "nothing to sync"
    assert _fills(order) == [2, 2, 2]
    stored = Order.objects.get(pk=order.pk)
    assert stored.filled_quantity == 6 and stored.fill_value == PRICE
    assert OrderEvent.objects.filter(order=order, kind="filled").count() == 3
    assert broker.executions(order.client_order_id) == 1


def test_a_sync_that_finds_nothing_new_writes_nothing(order, broker, session_now):
    broker.set_fill_policy(FillPolicy(mode="partial", step=2), symbol=SYMBOL)
    process_order(order.pk, session_now)
    events = OrderEvent.objects.filter(order=order).count()

    for _ in range(2):
        result = sync_order_status(order.pk, session_now)
        assert result.status == OrderStatus.PARTIALLY_FILLED and result.detail.startswith("still")

    assert OrderEvent.objects.filter(order=order).count() == events
    assert _fills(order) == [2]


def test_a_cancel_after_a_partial_fill_keeps_what_was_filled(order, broker, session_now):
    broker.set_fill_policy(FillPolicy(mode="partial", step=2), symbol=SYMBOL)
    process_order(order.pk, session_now)
    broker.advance(order.client_order_id)
    broker.end_order(order.client_order_id, "canceled")

    result = sync_order_status(order.pk, session_now)

    assert result.status == OrderStatus.REJECTED and result.detail == "canceled"
    stored = Order.objects.get(pk=order.pk)
    assert stored.filled_quantity == 4
    assert _units(order) == 4 and _fills(order) == [2, 2]
    assert sync_order_status(order.pk, session_now).detail == "nothing to sync"


def test_a_replaced_order_is_followed_and_the_chain_adds_up(order, broker, session_now):
    broker.set_fill_policy(FillPolicy(mode="partial", step=2), symbol=SYMBOL)
    assert process_order(order.pk, session_now).status == OrderStatus.PARTIALLY_FILLED
    held = broker.orders[order.client_order_id]
    # The broker's desk replaces the rest (4 units) by a new order, which then fills: each
    # order of the chain reports only its own fills.
    answer = requests.patch(
        f"{broker.url}/v2/orders/{held['id']}",
        json={"qty": "4"},
        headers={"APCA-API-KEY-ID": broker.key_id, "APCA-API-SECRET-KEY": broker.secret_key},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    replacement = answer.json()["client_order_id"]
    # Worked under the old order's policy: 2 units at once, then the last 2.
    broker.advance(replacement)

    result = sync_order_status(order.pk, session_now)

    assert result.status == OrderStatus.FILLED
    stored = Order.objects.get(pk=order.pk)
    assert stored.filled_quantity == 6
    assert _units(order) == 6 and _fills(order) == [2, 4]
    assert sync_orders(session_now) == []


def test_reconcile_orders_covers_a_partially_filled_order(order, broker, session_now):
    broker.set_fill_policy(FillPolicy(mode="partial", step=2), symbol=SYMBOL)
    process_order(order.pk, session_now)
    broker.advance(order.client_order_id)

    lines = reconcile_orders()

    assert lines == [f"{order.pk}: partially_filled"]
    assert _units(order) == 4
