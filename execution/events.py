"""Order events: one row in ``order_events`` per change of an order (orchestration helpers).

Every change of an order (queued, submitted, stopped by the gate, answered, filled, queued
again, reconciled, cancelled) is appended as an ``OrderEvent`` **inside the transaction that
makes the change**: the event commits with the change or not at all, so the event table never
says something the ``orders`` table does not, and ``execution.lakehouse`` can export it exactly
once. These functions only insert; they never commit, lock or read.

Call them after the order row is written in that transaction (after the ``bulk_create`` of
new orders, after the ``save``/``update`` of a changed one), never in a transaction of their
own and never before the change: on PostgreSQL the export's check that no earlier event is
still uncommitted relies on the inserting transaction already holding its transaction id when
it takes an event id (``execution.lakehouse.settled_high_mark``).

Each event copies the order's key facts as they are at the change (``to_status`` is the
order's status now, ``from_status`` the one before), so pass the order after changing it in
memory, and the previous status the caller read before changing it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from execution.models import Order, OrderEvent, OrderEventKind, OrderStatus

#: Keyword facts an event may carry besides the order's own: they override what is read from
#: the order (``detail`` defaults to the order's status reason).
EVENT_FACTS = frozenset({"fill_quantity", "detail", "payload"})


def order_event(
    order: Order,
    kind: str,
    *,
    now: datetime,
    previous_status: str | None = None,
    recorded_at: datetime | None = None,
    **facts: Any,
) -> OrderEvent:
    """The event (unsaved) of ``order``'s change ``kind`` at ``now`` (the engine's clock).

    ``previous_status``: the order's status before the change (None: a new order). ``facts``:
    ``fill_quantity`` (a fill increment), ``detail`` (why; default the order's
    ``status_reason``), ``payload`` (a JSON object). No query.
    """
    unknown = set(facts) - EVENT_FACTS
    if unknown:
        raise TypeError(f"unknown order event facts: {', '.join(sorted(unknown))}")
    if kind not in OrderEventKind.values:
        raise ValueError(f"unknown order event kind {kind!r}")
    return OrderEvent(
        order_id=order.pk,
        pool_id=order.pool_id,
        kind=kind,
        from_status=previous_status or "",
        to_status=order.status,
        entity=order.entity_id,
        side=order.side,
        quantity=order.quantity,
        filled_quantity=order.filled_quantity,
        fill_quantity=facts.get("fill_quantity"),
        fill_value=order.fill_value,
        broker_order_id=order.broker_order_id,
        client_order_id=order.client_order_id,
        reason=order.reason,
        detail=(facts.get("detail") or order.status_reason or "")[:200],
        occurred_at=now,
        recorded_at=recorded_at or timezone.now(),
        payload=facts.get("payload") or {},
    )


def record_order_event(
    order: Order,
    kind: str,
    *,
    now: datetime,
    previous_status: str | None = None,
    **facts: Any,
) -> OrderEvent:
    """Append the event of ``order``'s change ``kind`` (one INSERT); see the module docstring.

    Call it inside the transaction that changes the order, after the change is written."""
    event = order_event(order, kind, now=now, previous_status=previous_status, **facts)
    event.save(force_insert=True)
    return event


def record_order_events(
    orders: Iterable[Order],
    kind: str,
    now: datetime,
    *,
    previous_status: str | None = None,
    **facts: Any,
) -> list[OrderEvent]:
    """Append one ``kind`` event per order, in the orders' order (one INSERT per 500 events,
    none for no order): the bulk form for the orders a cycle or a loop creates
    (``record_order_events(created, "queued", now)``) or a batch of claims.

    Call it inside the transaction that changes the orders, after the change is written; the
    orders must have their primary keys."""
    recorded_at = timezone.now()
    events = [
        order_event(
            order,
            kind,
            now=now,
            previous_status=previous_status,
            recorded_at=recorded_at,
            **facts,
        )
        for order in orders
    ]
    if events:
        OrderEvent.objects.bulk_create(events, batch_size=500)
    return events


#: The event of each status a claim leaves a ``queued`` order in.
CLAIM_KINDS = {
    OrderStatus.SUBMITTING: OrderEventKind.SUBMITTED,
    OrderStatus.RISK_REJECTED: OrderEventKind.RISK_REJECTED,
    OrderStatus.REJECTED: OrderEventKind.REJECTED,
}


def record_claim_events(orders: Iterable[Order], now: datetime) -> list[OrderEvent]:
    """Append the event of each order a claim judged, from ``queued`` to its new status:
    ``submitted`` (sent under a lease), ``risk_rejected`` (stopped by the gate) or ``rejected``
    (idempotency key mismatch). One INSERT per 500 orders, none for no order.

    Call it in the claim's transaction, after the orders are written."""
    recorded_at = timezone.now()
    events = [
        order_event(
            order,
            CLAIM_KINDS[order.status],
            now=now,
            previous_status=OrderStatus.QUEUED,
            recorded_at=recorded_at,
        )
        for order in orders
    ]
    if events:
        OrderEvent.objects.bulk_create(events, batch_size=500)
    return events


def answer_events(
    order: Order,
    *,
    previous_status: str,
    previous_filled_quantity: Decimal,
    now: datetime,
    kind: str = OrderEventKind.ANSWERED,
    payload: dict | None = None,
    recorded_at: datetime | None = None,
) -> list[OrderEvent]:
    """The events (unsaved) of a broker answer stored on ``order``: the ``kind`` event
    (``answered`` for the submit's answer, ``reconciled`` for a lookup's), then a ``filled``
    event when the answer raised the filled quantity, carrying the increment
    (``filled_quantity - previous_filled_quantity``). No query."""
    recorded_at = recorded_at or timezone.now()
    events = [
        order_event(
            order,
            kind,
            now=now,
            previous_status=previous_status,
            recorded_at=recorded_at,
            payload=payload,
        )
    ]
    increment = (order.filled_quantity or Decimal("0")) - (previous_filled_quantity or Decimal("0"))
    if increment > 0:
        events.append(
            order_event(
                order,
                OrderEventKind.FILLED,
                now=now,
                previous_status=previous_status,
                recorded_at=recorded_at,
                fill_quantity=increment,
            )
        )
    return events


def record_answer_events(
    order: Order,
    *,
    previous_status: str,
    previous_filled_quantity: Decimal,
    now: datetime,
    kind: str = OrderEventKind.ANSWERED,
    payload: dict | None = None,
) -> list[OrderEvent]:
    """Append the events of a broker answer stored on ``order`` (``answer_events``). One
    INSERT. A batch of answers inserts all their ``answer_events`` at once instead.

    Call it in the transaction that stores the answer, after the order is saved."""
    events = answer_events(
        order,
        previous_status=previous_status,
        previous_filled_quantity=previous_filled_quantity,
        now=now,
        kind=kind,
        payload=payload,
    )
    OrderEvent.objects.bulk_create(events)
    return events
