"""Order events (execution/events.py): appended in the transaction of the change, by the
decision cycle and the loops for the orders they create, in the order they were written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from decisions.engine import run_decision_cycle
from decisions.loops import run_rebalancer, run_risk_threshold_monitor
from execution.dispatch import queued_order
from execution.events import (
    record_answer_events,
    record_claim_events,
    record_order_event,
    record_order_events,
)
from execution.keys import client_order_id_for
from execution.models import Order, OrderEvent, OrderEventKind, OrderStatus
from portfolio.market_calendar import get_market_calendar
from portfolio.models import Commitment, MarketSnapshot
from tests import factories

D = Decimal
FRIDAY = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)
MONDAY_0945 = datetime(2026, 11, 23, 14, 45, tzinfo=UTC)


def universe(now, symbols, *, closes=None, spread=2.0):
    sectors = ["Tech", "Energy", "Health", "Utilities", "Retail"]
    for i, symbol in enumerate(symbols):
        factories.add_bars(
            symbol, now, closes=closes, spread=spread, sector=sectors[i % len(sectors)]
        )


def cycle_orders(pool, now, symbols, *, confidence="0.80") -> list[Order]:
    for symbol in symbols:
        factories.make_recommendation(symbol, now, confidence=confidence)
    result = run_decision_cycle(pool.pk, now, dispatch=False)
    assert result.order_ids, "the cycle should have ordered"
    return list(Order.objects.filter(pk__in=result.order_ids).order_by("id"))


def mark(symbol, at, value):
    value = D(value)
    MarketSnapshot.objects.create(
        entity_id=symbol, as_of=at, open=value, high=value, low=value, close=value
    )


# --- queued events from the engine and the loops ----------------------------------------------


def test_decision_cycle_writes_one_queued_event_per_order_with_its_facts(pool, session_now):
    universe(session_now, ["AAA", "BBB", "CCC"])

    orders = cycle_orders(pool, session_now, ["AAA", "BBB", "CCC"])

    events = list(OrderEvent.objects.order_by("id"))
    assert [e.order_id for e in events] == [o.pk for o in orders]
    for event, order in zip(events, orders, strict=True):
        assert (event.kind, event.from_status, event.to_status) == ("queued", "", "queued")
        assert event.pool_id == pool.pk
        assert (event.entity, event.side, event.reason) == (order.entity_id, "buy", "entry")
        assert event.quantity == order.quantity and event.filled_quantity == 0
        assert event.fill_quantity is None and event.fill_value is None
        assert event.client_order_id == client_order_id_for(order.idempotency_key)
        assert event.occurred_at == session_now  # the engine's clock, not the wall clock
        assert event.recorded_at > session_now


def test_a_cycle_without_orders_writes_no_event(pool, session_now):
    universe(session_now, ["LOW"])
    factories.make_recommendation("LOW", session_now, confidence="0.30")  # below the minimum

    result = run_decision_cycle(pool.pk, session_now, dispatch=False)

    assert result.outcomes["skip"] == 1 and not result.order_ids
    assert not OrderEvent.objects.exists()


def hold(pool, symbol, units, entry, *, stop, target, atr, opened_at) -> Commitment:
    """An open commitment as the worker books a fill (the worker is not under test here)."""
    pool.cash -= D(units) * D(entry)
    pool.save(update_fields=["cash"])
    return Commitment.objects.create(
        pool=pool,
        entity_id=symbol,
        units=D(units),
        entry_value=D(entry),
        entry_cost=D(units) * D(entry),
        risk_tier=pool.risk_tier,
        atr_at_entry=D(atr),
        atr=D(atr),
        risk_threshold=D(stop),
        gain_target=D(target),
        highest_value=D(entry),
        opened_at=opened_at,
    )


def test_monitor_exit_writes_a_queued_event_in_its_transaction(pool, session_now):
    universe(session_now, ["EXT"], closes=[100.0] * 20)
    hold(pool, "EXT", "50", "100", stop="96", target="106", atr="2", opened_at=session_now)
    (entry,) = cycle_orders(pool, session_now, ["EXT"])  # an add-on entry, still queued
    later = session_now + timedelta(hours=1)
    mark("EXT", later, "95")  # below the risk threshold at 96

    result = run_risk_threshold_monitor(pool.pk, later, dispatch=False)

    (exit_order,) = Order.objects.filter(pk__in=result.order_ids)
    event = OrderEvent.objects.get(order=exit_order)
    assert (event.kind, event.to_status, event.side) == ("queued", "queued", "sell")
    assert (event.reason, event.occurred_at) == ("risk_threshold", later)
    assert event.quantity == exit_order.quantity == D("50")
    assert event.id > OrderEvent.objects.get(order=entry, kind="queued").id


def test_rebalancer_trim_writes_a_queued_event(db):
    """A commitment at the tier's 10 % limit on Friday, 10 % up by the close: Monday's
    rebalance trims it."""
    pool = factories.make_pool(now=FRIDAY)
    universe(FRIDAY, ["BIG"], closes=[100.0] * 20, spread=10.0)
    hold(pool, "BIG", "100", "100", stop="80", target="130", atr="10", opened_at=FRIDAY)
    mark("BIG", get_market_calendar(FRIDAY).session_close(FRIDAY.date()), "110")

    result = run_rebalancer(pool.pk, MONDAY_0945, dispatch=False)

    (trim,) = Order.objects.filter(pk__in=result.order_ids)
    event = OrderEvent.objects.get(order=trim)
    assert (event.kind, event.reason, event.side) == ("queued", "rebalance", "sell")
    assert (event.quantity, event.occurred_at) == (trim.quantity, MONDAY_0945)


# --- the same transaction ---------------------------------------------------------------------


def _new_order(pool, now, reference, key_reference=None) -> Order:
    order = queued_order(
        pool=pool,
        entity_id="TXN",
        action="act",
        side="buy",
        reason="entry",
        quantity=D("3"),
        estimated_value=D("100"),
        reference=reference,
        now=now,
    )
    if key_reference is not None:  # the same idempotency key as another order's
        order.idempotency_key = key_reference
    return order


def test_a_failed_transaction_leaves_neither_the_orders_nor_their_events(pool, session_now):
    factories.make_entity("TXN")
    first = _new_order(pool, session_now, "txn:1")

    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.bulk_create([first])
        record_order_events([first], OrderEventKind.QUEUED, session_now)
        assert OrderEvent.objects.filter(order=first).exists()  # written, not yet committed
        # A second order under the same idempotency key: the database refuses it, and the
        # whole transaction (the first order and its event) goes with it.
        duplicate = _new_order(pool, session_now, "txn:2", key_reference=first.idempotency_key)
        duplicate.save()
        record_order_event(duplicate, OrderEventKind.QUEUED, now=session_now)

    assert not Order.objects.exists()
    assert not OrderEvent.objects.exists()


def test_an_event_commits_with_its_change(pool, session_now):
    factories.make_entity("TXN")
    order = _new_order(pool, session_now, "txn:ok")

    with transaction.atomic():
        Order.objects.bulk_create([order])
        record_order_events([order], OrderEventKind.QUEUED, session_now)

    assert list(OrderEvent.objects.values_list("order_id", "kind")) == [(order.pk, "queued")]


# --- ordering and the helpers -----------------------------------------------------------------


def test_event_ids_follow_the_order_of_the_writes(pool, session_now):
    universe(session_now, ["AAA", "BBB", "CCC", "DDD"])
    first = cycle_orders(pool, session_now, ["AAA", "BBB"])
    later = session_now + timedelta(minutes=1)
    second = cycle_orders(pool, later, ["CCC", "DDD"])

    events = list(OrderEvent.objects.order_by("id"))

    assert [e.order_id for e in events] == [o.pk for o in first + second]
    assert [e.occurred_at for e in events] == [session_now] * 2 + [later] * 2
    assert list(OrderEvent.objects.all()) == events  # the model's default order is the id


def test_answer_events_carry_the_fill_increment(pool, session_now):
    universe(session_now, ["FIL"])
    (order,) = cycle_orders(pool, session_now, ["FIL"])
    order.quantity = D("10")
    later = session_now + timedelta(seconds=5)

    with transaction.atomic():
        order.status = OrderStatus.PARTIALLY_FILLED
        order.filled_quantity = D("4")
        order.fill_value = D("100.5")
        order.broker_order_id = "b-1"
        order.save()
        record_answer_events(
            order,
            previous_status=OrderStatus.SUBMITTING,
            previous_filled_quantity=D("0"),
            now=later,
            payload={"status": "partially_filled"},
        )
    with transaction.atomic():
        order.status = OrderStatus.FILLED
        order.filled_quantity = D("10")
        order.save()
        record_answer_events(
            order,
            previous_status=OrderStatus.PARTIALLY_FILLED,
            previous_filled_quantity=D("4"),
            now=later,
            kind=OrderEventKind.RECONCILED,
        )

    rows = list(
        OrderEvent.objects.filter(order=order)
        .exclude(kind="queued")
        .values_list("kind", "from_status", "to_status", "filled_quantity", "fill_quantity")
    )
    assert rows == [
        ("answered", "submitting", "partially_filled", D("4"), None),
        ("filled", "submitting", "partially_filled", D("4"), D("4")),
        ("reconciled", "partially_filled", "filled", D("10"), None),
        ("filled", "partially_filled", "filled", D("10"), D("6")),
    ]
    answered = OrderEvent.objects.get(order=order, kind="answered")
    assert answered.payload == {"status": "partially_filled"}
    assert (answered.broker_order_id, answered.fill_value) == ("b-1", D("100.5"))


def test_an_answer_without_a_new_fill_writes_no_filled_event(pool, session_now):
    universe(session_now, ["REJ"])
    (order,) = cycle_orders(pool, session_now, ["REJ"])
    with transaction.atomic():
        order.status = OrderStatus.REJECTED
        order.status_reason = "insufficient buying power"
        order.save()
        record_answer_events(
            order,
            previous_status=OrderStatus.SUBMITTING,
            previous_filled_quantity=D("0"),
            now=session_now,
        )

    event = OrderEvent.objects.get(order=order, kind="answered")
    assert (event.to_status, event.detail) == ("rejected", "insufficient buying power")
    assert not OrderEvent.objects.filter(order=order, kind="filled").exists()


def test_record_order_events_is_one_insert_whatever_the_number_of_orders(pool, session_now):
    universe(session_now, ["AAA", "BBB", "CCC"])
    orders = cycle_orders(pool, session_now, ["AAA", "BBB", "CCC"])

    with CaptureQueriesContext(connection) as none:
        assert record_order_events([], OrderEventKind.QUEUED, session_now) == []
    with CaptureQueriesContext(connection) as three:
        record_order_events(
            orders, OrderEventKind.REQUEUED, session_now, previous_status="submitting"
        )

    assert len(none.captured_queries) == 0
    assert len(three.captured_queries) == 1
    assert OrderEvent.objects.filter(kind="requeued", from_status="submitting").count() == 3


def test_unknown_kinds_and_facts_are_refused(pool, session_now):
    universe(session_now, ["AAA"])
    (order,) = cycle_orders(pool, session_now, ["AAA"])

    with pytest.raises(ValueError, match="unknown order event kind"):
        record_order_event(order, "teleported", now=session_now)
    with pytest.raises(TypeError, match="unknown order event facts: colour"):
        record_order_event(order, OrderEventKind.CANCELLED, now=session_now, colour="red")
    assert OrderEvent.objects.filter(order=order).count() == 1  # the queued one only


# --- admin ------------------------------------------------------------------------------------


def test_order_page_lists_its_events(admin_client, pool, session_now):
    universe(session_now, ["AAA"])
    (order,) = cycle_orders(pool, session_now, ["AAA"])
    with transaction.atomic():
        record_order_event(
            order, OrderEventKind.CANCELLED, now=session_now, detail="operator cancel"
        )

    response = admin_client.get(reverse("admin:execution_order_change", args=[order.pk]))

    assert response.status_code == 200
    (inline,) = [f for f in response.context["inline_admin_formsets"] if f.opts.model is OrderEvent]
    shown = [form.original for form in inline]
    assert [e.kind for e in shown] == list(
        OrderEvent.objects.filter(order=order).order_by("id").values_list("kind", flat=True)
    )
    assert "operator cancel" in response.content.decode()


def test_event_admin_filters_by_kind_and_pool_and_searches_by_order_id(
    admin_client, pool, session_now
):
    other = factories.make_pool(now=session_now)
    universe(session_now, ["AAA", "BBB"])
    (mine,) = cycle_orders(pool, session_now, ["AAA"])
    theirs = cycle_orders(other, session_now, ["BBB"])  # AAA's recommendation too
    with transaction.atomic():
        record_order_event(mine, OrderEventKind.CANCELLED, now=session_now)
    url = reverse("admin:execution_orderevent_changelist")

    def listed(query):
        response = admin_client.get(url, query)
        assert response.status_code == 200
        return sorted((e.order_id, e.kind) for e in response.context["cl"].result_list)

    assert listed({"kind": "cancelled"}) == [(mine.pk, "cancelled")]
    assert listed({"pool__id__exact": other.pk}) == [(o.pk, "queued") for o in theirs]
    assert listed({"q": str(mine.pk)}) == [(mine.pk, "cancelled"), (mine.pk, "queued")]
    assert listed({"q": "not-a-number"}) == []


def test_events_cannot_be_added_changed_or_deleted_in_the_admin(admin_client, pool, session_now):
    universe(session_now, ["AAA"])
    (order,) = cycle_orders(pool, session_now, ["AAA"])
    event = OrderEvent.objects.get(order=order)

    assert admin_client.get(reverse("admin:execution_orderevent_add")).status_code == 403
    change = reverse("admin:execution_orderevent_change", args=[event.pk])
    assert admin_client.get(change).status_code == 200
    assert admin_client.post(change, {"kind": "filled"}).status_code == 403
    delete = reverse("admin:execution_orderevent_delete", args=[event.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert OrderEvent.objects.get(pk=event.pk).kind == "queued"


def test_claim_events_follow_each_orders_new_status(pool, session_now):
    universe(session_now, ["AAA", "BBB", "CCC"])
    orders = cycle_orders(pool, session_now, ["AAA", "BBB", "CCC"])
    statuses = [OrderStatus.SUBMITTING, OrderStatus.RISK_REJECTED, OrderStatus.REJECTED]
    later = session_now + timedelta(seconds=1)

    with transaction.atomic():
        for order, status in zip(orders, statuses, strict=True):
            order.status = status
        Order.objects.bulk_update(orders, ["status"])
        with CaptureQueriesContext(connection) as insert:
            record_claim_events(orders, later)

    assert len(insert.captured_queries) == 1
    rows = list(
        OrderEvent.objects.filter(occurred_at=later).values_list("kind", "from_status", "to_status")
    )
    assert rows == [
        ("submitted", "queued", "submitting"),
        ("risk_rejected", "queued", "risk_rejected"),
        ("rejected", "queued", "rejected"),
    ]
