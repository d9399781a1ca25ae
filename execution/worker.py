"""The execution worker (source, page 6, "Execution Service Processing"): orchestration.

``process_order(order_id)`` takes one ``queued`` order through:

1. claim: lock the row (``SKIP LOCKED`` on PostgreSQL, so two workers never take the same
   order), check its idempotency key, run the risk evaluation against ``PoolRiskConfig`` and
   the account, store the evaluation whatever the outcome, and mark the order ``submitting``,
   all in one transaction;
2. submit to the adapter, outside any transaction (a network call never holds a lock);
3. store the broker's answer; a fill opens, adds to or closes the commitment and moves cash,
   in one transaction with the order.

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
    OrderSide,
    OrderStatus,
    PoolRiskConfig,
    RiskEvaluation,
)
from execution.risk import OrderRiskInput, PoolRiskLimits, evaluate_order
from portfolio.market_calendar import get_market_calendar
from portfolio.models import AdapterKind, Commitment, CommitmentStatus, Pool
from portfolio.risk_levels import compute_initial_levels
from portfolio.services import (
    get_engine_config,
    latest_value,
    load_market_data,
    rule_config,
    tier_params,
    value_pool,
)

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
    config, _ = PoolRiskConfig.objects.get_or_create(pool=pool)
    return rule_config(PoolRiskLimits, config)


def _risk_input(order: Order, pool: Pool, now: datetime) -> OrderRiskInput:
    """The account state for the risk evaluation. A fixed handful of queries."""
    valuation = value_pool(pool, now, extra_symbols={order.entity_id})
    positions = valuation.positions
    sector = order.entity.sector
    held = {p.symbol: p for p in positions}
    return OrderRiskInput(
        side=order.side,
        symbol=order.entity_id,
        sector=sector,
        quantity=order.quantity,
        estimated_value=order.estimated_value,
        opens_new_commitment=order.entity_id not in held,
        open_commitments=len(positions),
        sector_value=sum((p.market_value for p in positions if p.sector == sector), Decimal("0")),
        total_value=valuation.total_value,
        daily_gain=valuation.daily_gain,
        orders_last_minute=Order.objects.filter(
            pool=pool, submitted_at__gt=now - timedelta(minutes=1)
        )
        .exclude(pk=order.pk)
        .count(),
        held_units=held[order.entity_id].units if order.entity_id in held else Decimal("0"),
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
            _apply_fill(order, pool, now)
        order.save()
    if order.status == OrderStatus.UNKNOWN:
        logger.warning("order %s: outcome unknown (%s); reconcile", order_id, response.reason)
    return ProcessResult(order_id, order.status, order.status_reason)


def _apply_fill(order: Order, pool: Pool, now: datetime) -> None:
    quantity = order.filled_quantity
    value = order.fill_value
    commitment = (
        Commitment.objects.select_for_update()
        .filter(pool=pool, entity_id=order.entity_id, status=CommitmentStatus.OPEN)
        .first()
    )
    if order.side == OrderSide.BUY:
        pool.cash -= quantity * value
        config = get_engine_config(pool)
        tier = tier_params(pool.risk_tier)
        market = load_market_data({order.entity_id}, now, config.atr_period + 1)
        atr = market.atr(order.entity_id, config.atr_period)
        if commitment is None:
            commitment = Commitment(
                pool=pool,
                entity_id=order.entity_id,
                units=quantity,
                entry_value=value,
                entry_cost=quantity * value,
                risk_tier=tier.name,
                atr_at_entry=atr,
                atr=atr,
                highest_value=value,
                opened_at=order.filled_at,
            )
            previous_stop = None
        else:
            units = commitment.units + quantity
            commitment.entry_value = (
                (commitment.units * commitment.entry_value + quantity * value) / units
            ).quantize(Decimal("0.0001"))
            commitment.entry_cost += quantity * value
            commitment.units = units
            commitment.highest_value = max(commitment.highest_value or value, value)
            commitment.atr = atr or commitment.atr
            previous_stop = commitment.risk_threshold
        if commitment.atr:
            levels = compute_initial_levels(
                commitment.entry_value,
                commitment.atr,
                tier.stop_loss_atr_multiplier,
                tier.reward_risk_ratio,
            )
            # A stop never loosens, an add included.
            commitment.risk_threshold = max(levels.risk_threshold, previous_stop or Decimal("0"))
            commitment.gain_target = levels.gain_target
        else:
            logger.warning("order %s: no ATR for %s; no risk levels", order.pk, order.entity_id)
        commitment.save()
        order.commitment = commitment
    else:
        if commitment is None:
            # The risk evaluation checks units held, so this means the books and the broker
            # disagree: record the fill and leave the commitment for reconciliation.
            logger.error("order %s: sell filled without an open commitment", order.pk)
            pool.cash += quantity * value
            pool.save(update_fields=["cash", "updated_at"])
            return
        realized = (value - commitment.entry_value) * quantity
        pool.cash += quantity * value
        commitment.units -= quantity
        commitment.entry_cost -= commitment.entry_value * quantity
        commitment.realized_gain += realized
        order.realized_gain = realized
        order.commitment = commitment
        if commitment.units <= 0:
            commitment.units = Decimal("0")
            commitment.status = CommitmentStatus.CLOSED
            commitment.closed_at = order.filled_at
            commitment.exit_value = value
            commitment.close_reason = order.reason
        commitment.save()
    pool.save(update_fields=["cash", "updated_at"])


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
