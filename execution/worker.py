"""The execution worker (the source, 'Execution Service Processing'): orchestration.

``process_order(order_id)`` takes one ``queued`` order through:

1. claim: lock the row (``SKIP LOCKED`` on PostgreSQL, so two workers never take the same
   order) and its pool, check its idempotency key, run the execution gate
   (``execution.risk.evaluate_order``) against ``PoolRiskConfig``, the account and the trading
   state as of now, store the evaluation whatever the outcome, and mark the order
   ``submitting`` or ``risk_rejected``, all in one transaction;
2. submit to the adapter, outside any transaction (a network call never holds a lock);
3. store the broker's answer; a fill is booked by ``portfolio.books.book_fill`` (the
   commitment opened, added to or closed, the cash moved) in one transaction with the order.

The gate is the one every order passes, so the trading state is judged when the order is
about to leave, not only when it was decided: an entry queued before a halt, a pool-wide
breaker or its entity's loss cooldown (or handed out again by the sweeper after one) is
``risk_rejected`` with the reason in its ``RiskEvaluation``; a halted pool lets only exits of
units held through. The pool row stays locked from the claim to the decision to submit, so a
halt committed before the claim is seen, and one committed after it waits for the claim.

Fail-closed: an order is submitted only from ``queued``, and it leaves ``queued`` in the same
transaction that decides to submit it. A crash after step 1 leaves it ``submitting``; a
timeout, network error, 5xx or unreadable answer leaves it ``unknown``. Neither is ever sent
again blindly: ``reconcile_order`` looks it up by its client order id first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from execution.adapters import (
    AlpacaHttpAdapter,
    ExecutionAdapter,
    ExecutionResponse,
    OrderRequest,
    PaperAdapter,
    ResponseStatus,
)
from execution.keys import derive_idempotency_key
from execution.models import (
    Order,
    OrderStatus,
    RiskEvaluation,
)
from execution.risk import OrderRiskInput, PoolRiskLimits, evaluate_order
from execution.selectors import pool_as_of
from portfolio.books import book_fill
from portfolio.market_calendar import get_market_calendar
from portfolio.models import AdapterKind, Pool
from portfolio.selectors import (
    get_engine_config,
    get_pool_risk_config,
    latest_value,
    rule_config,
)
from portfolio.telemetry import observe_order_answered

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessResult:
    order_id: int
    status: str
    detail: str = ""


def build_adapter(pool: Pool, now: datetime) -> ExecutionAdapter:
    """The pool's execution adapter: the in-process paper broker or the HTTP execution API."""
    if pool.adapter == AdapterKind.HTTP:
        if not settings.EXECUTION_API_URL:
            raise RuntimeError("pool uses the http adapter but EXECUTION_API_URL is not set")
        timeout = float(settings.EXECUTION_API_TIMEOUT)
        return AlpacaHttpAdapter(
            settings.EXECUTION_API_URL,
            settings.EXECUTION_API_KEY_ID,
            settings.EXECUTION_API_SECRET_KEY,
            timeout=(min(3.05, timeout), timeout),
        )
    calendar = get_market_calendar(now)
    config = get_engine_config(pool)
    return PaperAdapter(
        price_of=lambda symbol: latest_value(symbol, now, calendar),
        now=now,
        slippage_bps=config.paper_slippage_bps,
    )


def process_order(
    order_id: int, now: datetime | None = None, adapter: ExecutionAdapter | None = None
) -> ProcessResult:
    """Take one queued order to the broker and store the outcome; see the module docstring.

    Calling it again for the same order changes nothing: only a ``queued`` order is claimed.
    """
    now = now or timezone.now()
    claim = _claim(order_id, now)
    if isinstance(claim, ProcessResult):
        return claim
    order, request = claim
    try:
        adapter = adapter or build_adapter(order.pool, now)
        response = adapter.submit(request)
    except Exception as exc:  # an adapter bug must not look like "not sent"
        logger.exception("order %s: adapter raised; the outcome is unknown", order_id)
        response = ExecutionResponse.unknown(f"adapter_error: {exc}"[:200], {"error": str(exc)})
    return record_response(order_id, response, now, expected=OrderStatus.SUBMITTING)


def _claim(order_id: int, now: datetime) -> tuple[Order, OrderRequest] | ProcessResult:
    with transaction.atomic():
        order = (
            Order.objects.select_for_update(skip_locked=True)
            .filter(pk=order_id, status=OrderStatus.QUEUED)
            .first()
        )
        if order is None:
            current = Order.objects.filter(pk=order_id).values_list("status", flat=True).first()
            return ProcessResult(order_id, current or "missing", "not claimable")
        pool = Pool.objects.select_for_update().get(pk=order.pool_id)
        order.pool = pool
        expected = derive_idempotency_key(
            order.entity_id, order.action, order.quantity, order.reference
        )
        if expected != order.idempotency_key:
            order.status = OrderStatus.REJECTED
            order.status_reason = "idempotency_key_mismatch"
            order.save(update_fields=["status", "status_reason", "updated_at"])
            return ProcessResult(order_id, order.status, order.status_reason)
        risk_input = _risk_input(order, pool, now)
        limits = _limits(pool)
        evaluation = evaluate_order(risk_input, limits)
        RiskEvaluation.objects.create(
            order=order,
            pool=pool,
            passed=evaluation.passed,
            reasons=list(evaluation.reasons),
            checks=list(evaluation.checks),
            evaluated_at=now,
        )
        if not evaluation.passed:
            order.status = OrderStatus.RISK_REJECTED
            order.status_reason = ", ".join(evaluation.reasons)[:200]
            order.save(update_fields=["status", "status_reason", "updated_at"])
            logger.info("order %s: risk evaluation failed: %s", order_id, order.status_reason)
            return ProcessResult(order_id, order.status, order.status_reason)
        request = OrderRequest(
            client_order_id=order.idempotency_key,
            symbol=order.entity_id,
            side=order.side,
            quantity=order.quantity,
        )
        order.status = OrderStatus.SUBMITTING
        order.attempts += 1
        order.submitted_at = now
        order.request_payload = {
            "client_order_id": request.client_order_id,
            "symbol": request.symbol,
            "side": request.side,
            "qty": format(request.quantity, "f"),
            "type": request.order_type,
            "time_in_force": request.time_in_force,
        }
        order.save(
            update_fields=["status", "attempts", "submitted_at", "request_payload", "updated_at"]
        )
    return order, request


def _limits(pool: Pool) -> PoolRiskLimits:
    return rule_config(PoolRiskLimits, get_pool_risk_config(pool))


def _risk_input(order: Order, pool: Pool, now: datetime) -> OrderRiskInput:
    """The account and trading state for the risk evaluation, from the read model as of
    ``now``: the halt of the locked ``pool`` row, the breakers in force (an expired or cleared
    one is not), the entity's cooldown. A fixed handful of queries."""
    state = pool_as_of(pool, now, extra_symbols={order.entity_id})
    positions = state.positions
    sector = order.entity.sector
    held = state.held
    breakers = state.breakers
    return OrderRiskInput(
        side=order.side,
        symbol=order.entity_id,
        sector=sector,
        quantity=order.quantity,
        estimated_value=order.estimated_value,
        opens_new_commitment=order.entity_id not in held,
        open_commitments=len(positions),
        sector_value=sum((p.market_value for p in positions if p.sector == sector), Decimal("0")),
        total_value=state.total_value,
        daily_gain=state.daily_gain,
        orders_last_minute=Order.objects.filter(
            pool=pool, submitted_at__gt=now - timedelta(minutes=1)
        )
        .exclude(pk=order.pk)
        .count(),
        held_units=held[order.entity_id].units if order.entity_id in held else Decimal("0"),
        halted=state.halted,
        breakers_in_force=breakers.pool_wide,
        breaker_until=breakers.until,
        entity_cooldown_until=breakers.entity_cooldowns.get(order.entity_id),
    )


_STATUS_FOR = {
    ResponseStatus.FILLED: OrderStatus.FILLED,
    ResponseStatus.PARTIALLY_FILLED: OrderStatus.PARTIALLY_FILLED,
    ResponseStatus.ACCEPTED: OrderStatus.ACCEPTED,
    ResponseStatus.REJECTED: OrderStatus.REJECTED,
    ResponseStatus.UNKNOWN: OrderStatus.UNKNOWN,
}


def record_response(
    order_id: int, response: ExecutionResponse, now: datetime, *, expected: str
) -> ProcessResult:
    """Store the broker's answer and, on a fill, move the commitment and the cash.

    Only an order still in ``expected`` status is changed, so an answer is applied once.
    A partial fill is stored but the commitment moves only with the final fill, which the
    order status sync reads from the broker.
    """
    with transaction.atomic():
        order = Order.objects.select_for_update().select_related("entity").get(pk=order_id)
        if order.status != expected:
            return ProcessResult(order_id, order.status, "answer already recorded")
        pool = Pool.objects.select_for_update().get(pk=order.pool_id)
        order.status = _STATUS_FOR.get(response.status, OrderStatus.UNKNOWN)
        order.status_reason = response.reason[:200]
        order.broker_order_id = response.broker_order_id or order.broker_order_id
        order.response_payload = response.raw
        # A final answer books whatever was filled, a cancelled remainder included.
        if response.is_final and response.has_fill:
            order.filled_quantity = response.filled_quantity
            order.fill_value = response.fill_value
            order.filled_at = response.filled_at or now
            booked = book_fill(
                pool,
                entity_id=order.entity_id,
                side=order.side,
                units=order.filled_quantity,
                value=order.fill_value,
                filled_at=order.filled_at,
                now=now,
                reason=order.reason,
                order_id=order.pk,
                order_filled_quantity=order.filled_quantity,
            )
            order.commitment = booked.commitment or order.commitment
            order.realized_gain = booked.realized_gain
        order.save()
        observe_order_answered(order, expected, now)
    if order.status == OrderStatus.UNKNOWN:
        logger.warning("order %s: outcome unknown (%s); reconcile", order_id, response.reason)
    return ProcessResult(order_id, order.status, order.status_reason)


def queued_order_ids(pool: Pool | None = None) -> list[int]:
    """Ids of the orders waiting for the worker, oldest first."""
    qs = Order.objects.filter(status=OrderStatus.QUEUED)
    if pool is not None:
        qs = qs.filter(pool=pool)
    return list(qs.order_by("created_at", "id").values_list("id", flat=True))


def drain_queued_orders(pool: Pool, now: datetime) -> list[ProcessResult]:
    """Process every queued order of the pool in this process (``run_engine --once``)."""
    return [process_order(order_id, now) for order_id in queued_order_ids(pool)]


#: An order left ``submitting`` longer than this is treated as unknown: its worker died
#: between sending it and storing the answer.
STALE_SUBMITTING = timedelta(minutes=2)


def reconcile_order(
    order_id: int, now: datetime | None = None, adapter: ExecutionAdapter | None = None
) -> ProcessResult:
    """Settle an order whose outcome is unknown by looking it up by its client order id.

    Found at the broker: its answer is stored as if it had come back from the submit (a fill
    books the commitment once). Not found ``STALE_SUBMITTING`` after it was sent: the broker
    never received it, so it goes back to ``queued`` and will be submitted under the same
    client order id, which the broker refuses to execute twice. Otherwise it stays as it is.
    """
    now = now or timezone.now()
    order = Order.objects.select_related("pool").get(pk=order_id)
    stale = order.submitted_at is None or order.submitted_at <= now - STALE_SUBMITTING
    if order.status not in (OrderStatus.UNKNOWN, OrderStatus.ACCEPTED) and not (
        order.status == OrderStatus.SUBMITTING and stale
    ):
        return ProcessResult(order_id, order.status, "nothing to reconcile")
    adapter = adapter or build_adapter(order.pool, now)
    response = adapter.lookup(order.idempotency_key)
    if response.status == ResponseStatus.NOT_FOUND:
        if order.status == OrderStatus.ACCEPTED:
            # The broker acknowledged it once; "not found" now is itself ambiguous.
            return ProcessResult(order_id, order.status, "accepted order not found at broker")
        if not stale:
            # A request that timed out may still be on its way: give it time to land.
            return ProcessResult(order_id, order.status, "not found at broker yet")
        updated = Order.objects.filter(pk=order_id, status=order.status).update(
            status=OrderStatus.QUEUED, status_reason="not found at broker: queued again"
        )
        return ProcessResult(
            order_id, OrderStatus.QUEUED if updated else order.status, "not found at broker"
        )
    if response.status == ResponseStatus.UNKNOWN or (
        response.status == ResponseStatus.ACCEPTED and order.status == OrderStatus.ACCEPTED
    ):
        return ProcessResult(order_id, order.status, f"still {response.reason or 'open'}")
    return record_response(order_id, response, now, expected=order.status)


def orders_to_reconcile(now: datetime) -> list[int]:
    """Unknown and accepted orders, and orders stuck in ``submitting``."""
    stuck = Q(status=OrderStatus.SUBMITTING, submitted_at__lte=now - STALE_SUBMITTING)
    return list(
        Order.objects.filter(Q(status__in=(OrderStatus.UNKNOWN, OrderStatus.ACCEPTED)) | stuck)
        .order_by("id")
        .values_list("id", flat=True)
    )


def sweep_queued_orders(older_than: timedelta, now: datetime | None = None) -> list[int]:
    """Hand out again the orders left ``queued`` longer than ``older_than``.

    The task queue may lose a task (a Redis broker has no delivery receipts); the ``orders``
    table does not. Handing an order out twice is harmless: only one worker can claim it.
    """
    from execution.dispatch import enqueue_orders

    now = now or timezone.now()
    ids = list(
        Order.objects.filter(status=OrderStatus.QUEUED, created_at__lte=now - older_than)
        .order_by("created_at", "id")
        .values_list("id", flat=True)
    )
    enqueue_orders(ids)
    return ids
