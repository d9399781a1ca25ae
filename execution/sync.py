"""The order status sync: what the broker did since with the orders it is still working.

An order the broker accepted but has not finished (``accepted``, ``partially_filled``: at the
broker new, accepted, pending_new, held, pending_cancel, pending_replace, stopped,
suspended…) changes at the broker without telling the engine. ``sync_orders`` looks each one
up on a schedule (every ~30 s, ``execution.tasks.sync_orders``) and stores what changed
through the worker's one way of storing an answer (``execution.worker.record_response``, event
``reconciled``):

- every new fill increment is booked once, as it arrives (``portfolio.books.book_fill`` with
  the increment's units and value, under the order's new cumulative quantity: the fills
  table's unique (order, order_filled_quantity) makes a second run book nothing);
- an order that ended (canceled, expired, done for the day) keeps what was filled: ``rejected``
  with the broker's word as its reason and its filled quantity;
- a replaced order is followed along ``replaced_by`` (``follow_replacements``): each order of
  the chain reports only its own fills, so they are added up, and the last one's status is the
  order's.

docs/decisions.md, "Order status sync".
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from execution.adapters import ExecutionAdapter, ExecutionResponse, ResponseStatus
from execution.models import Order, OrderEventKind, OrderStatus
from execution.worker import (
    RECOVERY_BATCH,
    WORKING_STATUSES,
    ProcessResult,
    build_adapter,
    record_response,
)
from portfolio.models import Pool

logger = logging.getLogger(__name__)

ZERO = Decimal("0")
#: At most this many replacements are followed from one order (a broker loop stops here).
MAX_REPLACEMENTS = 20


def follow_replacements(
    adapter: ExecutionAdapter, response: ExecutionResponse
) -> ExecutionResponse:
    """The answer of a replaced order's whole chain: ``replaced_by`` looked up by broker id
    (``adapter.lookup_by_broker_id``) until an order that was not replaced; its status, the
    fills of every order of the chain added up (quantity, and the average value per unit
    weighted by each order's quantity), the first order's broker id. UNKNOWN when a link
    cannot be read (the next run tries again)."""
    first = response
    filled = response.filled_quantity
    value = filled * (response.fill_value or ZERO)
    chain = [response.raw]
    current = response
    for _ in range(MAX_REPLACEMENTS):
        if not current.is_replaced:
            break
        current = adapter.lookup_by_broker_id(current.replaced_by)
        chain.append(current.raw)
        if current.status in (ResponseStatus.UNKNOWN, ResponseStatus.NOT_FOUND):
            return ExecutionResponse.unknown(
                f"replacement unreadable: {current.reason or current.status}"[:200],
                {"chain": chain},
            )
        filled += current.filled_quantity
        value += current.filled_quantity * (current.fill_value or ZERO)
    else:
        return ExecutionResponse.unknown("replacement chain too long", {"chain": chain})
    status = current.status
    if status is ResponseStatus.ACCEPTED and filled > 0:
        status = ResponseStatus.PARTIALLY_FILLED
    return ExecutionResponse(
        status=status,
        broker_order_id=first.broker_order_id,
        filled_quantity=filled,
        fill_value=(value / filled) if filled > 0 else None,
        filled_at=current.filled_at or first.filled_at,
        reason=current.reason,
        retryable=False,
        raw={"chain": chain},
        broker_status=current.broker_status,
    )


#: The order status each answer leaves a working order in, when nothing else changes.
_SAME = {
    ResponseStatus.ACCEPTED: OrderStatus.ACCEPTED,
    ResponseStatus.PARTIALLY_FILLED: OrderStatus.PARTIALLY_FILLED,
}


def sync_order_status(
    order_id: int, now: datetime | None = None, adapter: ExecutionAdapter | None = None
) -> ProcessResult:
    """Look up one order the broker is working (``accepted``, ``partially_filled``) and store
    what changed (see the module docstring); anything else is left as it is. No write when
    nothing changed. Queries: the order, then ``record_response``'s when it changed."""
    now = now or timezone.now()
    order = Order.objects.select_related("pool").get(pk=order_id)
    if order.status not in WORKING_STATUSES:
        return ProcessResult(order_id, order.status, "nothing to sync")
    adapter = adapter or build_adapter(order.pool, now)
    response = adapter.lookup(order.client_order_id)
    if response.is_replaced:
        response = follow_replacements(adapter, response)
    if response.status == ResponseStatus.NOT_FOUND:
        # The broker acknowledged it once; "not found" now is itself ambiguous.
        return ProcessResult(order_id, order.status, "accepted order not found at broker")
    if response.status == ResponseStatus.UNKNOWN:
        return ProcessResult(order_id, order.status, f"still {response.reason or 'unknown'}")
    if (
        _SAME.get(response.status) == order.status
        and response.filled_quantity == order.filled_quantity
    ):
        return ProcessResult(order_id, order.status, f"still {response.broker_status or 'open'}")
    return record_response(
        order_id, response, now, expected=order.status, kind=OrderEventKind.RECONCILED
    )


def orders_to_sync() -> list[int]:
    """The orders the broker is working, oldest first, at most ``RECOVERY_BATCH``."""
    return list(
        Order.objects.filter(status__in=WORKING_STATUSES)
        .order_by("id")
        .values_list("id", flat=True)[:RECOVERY_BATCH]
    )


def sync_orders(
    now: datetime | None = None, adapter: ExecutionAdapter | None = None
) -> list[ProcessResult]:
    """Sync every order the broker is working (``sync_order_status``), one adapter per pool;
    one order's failure is logged and does not stop the others. Idempotent: a second run
    books nothing the first booked."""
    now = now or timezone.now()
    rows = list(
        Order.objects.filter(pk__in=orders_to_sync()).order_by("id").values_list("id", "pool_id")
    )
    pools = Pool.objects.in_bulk({pool_id for _, pool_id in rows})
    adapters: dict[int, ExecutionAdapter] = {}
    results = []
    for order_id, pool_id in rows:
        try:
            if adapter is None and pool_id not in adapters:
                adapters[pool_id] = build_adapter(pools[pool_id], now)
            results.append(sync_order_status(order_id, now, adapter or adapters[pool_id]))
        except Exception:
            logger.exception("order %s: status sync failed", order_id)
    return results
