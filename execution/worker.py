"""The execution worker (the source, 'Execution Service Processing'): orchestration.

``process_order(order_id)`` takes one ``queued`` order through:

1. claim: lock the row (``SKIP LOCKED`` on PostgreSQL, so two workers never take the same
   order) and its pool, check its idempotency key, run the execution gate
   (``execution.risk.evaluate_order``) against ``PoolRiskConfig``, the account and the trading
   state as of now, store the evaluation whatever the outcome, and mark the order
   ``submitting`` with a lease (``lease_owner``: who, ``lease_expires_at``: until when) or
   ``risk_rejected``, all in one transaction;
2. submit to the adapter, outside any transaction (a network call never holds a lock), while
   a ``LeaseRenewal`` thread keeps the lease alive, never beyond the task timeout;
3. store the broker's answer and clear the lease; a fill is booked by
   ``portfolio.books.book_fill`` (the commitment opened, added to or closed, the cash moved)
   in one transaction with the order.

The gate is the one every order passes, so the trading state is judged when the order is
about to leave, not only when it was decided: an entry queued before a halt, a pool-wide
breaker or its entity's loss cooldown (or handed out again by the sweeper after one) is
``risk_rejected`` with the reason in its ``RiskEvaluation``; a halted pool lets only exits of
units held through. The pool row stays locked from the claim to the decision to submit, so a
halt committed before the claim is seen, and one committed after it waits for the claim.

Fail-closed: an order is submitted only from ``queued``, and it leaves ``queued`` in the same
transaction that decides to submit it. A crash after step 1 leaves it ``submitting`` with a
lease nobody renews; once it expires, ``settle_expired_leases`` looks the order up by its
client order id and records the broker's answer or queues it again (docs/decisions.md,
"Leases: recovery in seconds"). A timeout, network error, 5xx or unreadable answer leaves it
``unknown``. Neither is ever sent again blindly: ``reconcile_order`` looks it up first.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
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
from portfolio.books import book_fill
from portfolio.market_calendar import get_market_calendar
from portfolio.models import AdapterKind, Pool
from portfolio.selectors import (
    account_as_of,
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


#: How long a claim holds an order without a renewal, in seconds (wall clock). A holder that
#: stops renewing for this long is taken for dead and its order is settled by a lookup.
LEASE_SECONDS = 15.0
#: How often the holder renews its lease while the submit is in flight, in seconds: three
#: renewals fit in one lease, so one late or failed renewal does not lose it.
LEASE_RENEW_SECONDS = 5.0


def new_lease_owner() -> str:
    """A name for one claim: ``host:pid:random`` (the random part tells two claims of one
    process apart), at most 100 characters."""
    return f"{socket.gethostname()[:70]}:{os.getpid()}:{secrets.token_hex(4)}"


def renew_lease(order_id: int, owner: str, cap: datetime, now: datetime | None = None) -> bool:
    """Move the lease of ``owner`` on a ``submitting`` order to ``now + LEASE_SECONDS``, never
    beyond ``cap``; False when ``owner`` no longer holds it (answered, or taken over by the
    settler). One UPDATE."""
    now = now or timezone.now()
    until = min(now + timedelta(seconds=LEASE_SECONDS), cap)
    return bool(
        Order.objects.filter(pk=order_id, status=OrderStatus.SUBMITTING, lease_owner=owner).update(
            lease_expires_at=until
        )
    )


class LeaseRenewal:
    """A daemon thread renewing a lease every ``LEASE_RENEW_SECONDS`` while the block runs.

    It never renews beyond ``cap`` (the claim plus ``ORDER_TASK_TIMEOUT``: django-q2 kills a
    task at its timeout, and ``run_engine``'s submit is bounded by the HTTP timeout), and it
    stops at the first renewal that finds the lease gone. A failed renewal (database away) is
    logged and tried again at the next tick. The thread uses its own database connection and
    closes it when done.
    """

    def __init__(self, order_id: int, owner: str, cap: datetime) -> None:
        self.order_id = order_id
        self.owner = owner
        self.cap = cap
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"lease-order-{order_id}", daemon=True
        )

    def __enter__(self) -> LeaseRenewal:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=LEASE_RENEW_SECONDS + 5)

    def _run(self) -> None:
        try:
            while not self._stop.wait(LEASE_RENEW_SECONDS):
                if timezone.now() >= self.cap:
                    return
                try:
                    held = renew_lease(self.order_id, self.owner, self.cap)
                except Exception:
                    logger.exception("order %s: lease renewal failed", self.order_id)
                    continue
                if not held:
                    logger.warning(
                        "order %s: lease of %s lost while submitting", self.order_id, self.owner
                    )
                    return
        finally:
            connection.close()


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
    owner = new_lease_owner()
    claim = claim_order(order_id, now, owner)
    if isinstance(claim, ProcessResult):
        return claim
    order, request, lease_cap = claim
    with LeaseRenewal(order_id, owner, lease_cap):
        try:
            adapter = adapter or build_adapter(order.pool, now)
            response = adapter.submit(request)
        except Exception as exc:  # an adapter bug must not look like "not sent"
            logger.exception("order %s: adapter raised; the outcome is unknown", order_id)
            response = ExecutionResponse.unknown(f"adapter_error: {exc}"[:200], {"error": str(exc)})
    return record_response(
        order_id, response, now, expected=OrderStatus.SUBMITTING, lease_owner=owner
    )


def claim_order(
    order_id: int, now: datetime, owner: str
) -> tuple[Order, OrderRequest, datetime] | ProcessResult:
    """Claim a ``queued`` order for ``owner``; returns the order, its request and the time
    beyond which its lease is never renewed (the claim plus the task timeout).

    Queries, whatever the size of the pool: the order with its entity, the pool with its
    ``PoolRiskConfig``, the gate's input (``_risk_input``: five), the evaluation and the
    order's update: nine, in one transaction. Only the order and pool rows are locked
    (``of=("self",)``), not the rows read with them."""
    with transaction.atomic():
        order = (
            Order.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("entity")
            .filter(pk=order_id, status=OrderStatus.QUEUED)
            .first()
        )
        if order is None:
            current = Order.objects.filter(pk=order_id).values_list("status", flat=True).first()
            return ProcessResult(order_id, current or "missing", "not claimable")
        pool = (
            Pool.objects.select_for_update(of=("self",))
            .select_related("risk_config")
            .get(pk=order.pool_id)
        )
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
        claimed_at = timezone.now()  # a lease measures a process's life: the wall clock
        lease_cap = claimed_at + timedelta(seconds=settings.ORDER_TASK_TIMEOUT)
        order.lease_owner = owner
        order.lease_expires_at = min(claimed_at + timedelta(seconds=LEASE_SECONDS), lease_cap)
        order.save(
            update_fields=[
                "status",
                "attempts",
                "submitted_at",
                "request_payload",
                "lease_owner",
                "lease_expires_at",
                "updated_at",
            ]
        )
    return order, request, lease_cap


def _limits(pool: Pool) -> PoolRiskLimits:
    """The gate's limits; no query when ``pool`` was read with its ``risk_config``."""
    return rule_config(PoolRiskLimits, get_pool_risk_config(pool))


def _risk_input(order: Order, pool: Pool, now: datetime) -> OrderRiskInput:
    """The account and trading state for the risk evaluation, from the read model as of
    ``now`` (``account_as_of``: the gate reads neither the tier nor the pending orders): the
    halt of the locked ``pool`` row, the positions at their current values, the day's gain,
    the breakers in force (an expired or cleared one is not), the entity's cooldown, and the
    orders sent in the last minute. Five queries, whatever the size of the pool; ``order``
    must carry its entity."""
    state = account_as_of(pool, now)
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
        sector_value=state.sector_value(sector),
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


#: Answers that say the broker holds the order.
_BROKER_HOLDS = (ResponseStatus.FILLED, ResponseStatus.PARTIALLY_FILLED, ResponseStatus.ACCEPTED)
#: What an order can have become after its holder lost the lease: queued again by the settler
#: ("not found at the broker"), and perhaps claimed again and stopped by the gate.
_NOT_AT_BROKER = (OrderStatus.QUEUED, OrderStatus.RISK_REJECTED)


def record_response(
    order_id: int,
    response: ExecutionResponse,
    now: datetime,
    *,
    expected: str,
    lease_owner: str | None = None,
) -> ProcessResult:
    """Store the broker's answer and, on a fill, move the commitment and the cash.

    Only an order still in ``expected`` status is changed, so an answer is applied once.
    With ``lease_owner`` (the worker's or the settler's answer) the order must also still be
    held by that lease, which this transaction clears. An answer that comes back after its
    lease was lost is applied only when it says the broker holds the order and the books say
    it is not there (queued again or stopped by the gate since); otherwise the broker's answer
    is left to the current holder, whose submit is refused as a duplicate and resolved by
    lookup. A partial fill is stored but the commitment moves only with the final fill, which
    the order status sync reads from the broker.

    Queries: the order (with its recommendation's arrival), the pool (with its engine
    configuration), the order's update, and ``book_fill``'s for a fill (six for a buy, four
    for a sell), and the latency histogram's upsert for an order of a recommendation. Only
    the order and pool rows are locked (``of=("self",)``), not the rows read with them.
    """
    with transaction.atomic():
        order = (
            Order.objects.select_for_update(of=("self",))
            .annotate(recommendation_received_at=F("recommendation__received_at"))
            .get(pk=order_id)
        )
        previous = order.status
        if lease_owner is not None and (
            order.status != expected or order.lease_owner != lease_owner
        ):
            if not (order.status in _NOT_AT_BROKER and response.status in _BROKER_HOLDS):
                return ProcessResult(order_id, order.status, "lease lost: answer not applied")
            logger.warning(
                "order %s: %s answer after the lease was lost; the broker holds it",
                order_id,
                response.status,
            )
        elif order.status != expected:
            return ProcessResult(order_id, order.status, "answer already recorded")
        pool = (
            Pool.objects.select_for_update(of=("self",))
            .select_related("engine_config")
            .get(pk=order.pool_id)
        )
        order.pool = pool
        changed = [
            "lease_owner",
            "lease_expires_at",
            "status",
            "status_reason",
            "broker_order_id",
            "response_payload",
            "updated_at",
        ]
        order.lease_owner = ""
        order.lease_expires_at = None
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
            changed += ["filled_quantity", "fill_value", "filled_at", "commitment", "realized_gain"]
        order.save(update_fields=changed)
        observe_order_answered(order, previous, now, received_at=order.recommendation_received_at)
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


#: An order claimed before leases existed (``lease_expires_at`` null) and left ``submitting``
#: longer than this is treated as unknown: its worker died between sending it and storing
#: the answer. An order with a lease is settled when the lease expires instead.
STALE_SUBMITTING = timedelta(minutes=2)

#: A ``queued`` order not claimed this long after it was last handed to the task queue is
#: handed out again: its task died with its worker or was lost with the broker.
SWEEP_QUEUED_AFTER = timedelta(seconds=20)

#: At most this many orders per settler or sweeper run; the next run takes the rest.
RECOVERY_BATCH = 500


def reconcile_order(
    order_id: int, now: datetime | None = None, adapter: ExecutionAdapter | None = None
) -> ProcessResult:
    """Settle an order whose outcome is unknown by looking it up by its client order id.

    Found at the broker: its answer is stored as if it had come back from the submit (a fill
    books the commitment once). Not found: the broker never received it, so it goes back to
    ``queued`` and will be submitted under the same client order id, which the broker refuses
    to execute twice. A ``submitting`` order with a lease is settled only once the lease has
    expired, at once (``settle_expired_leases``); an ``unknown`` order, or a ``submitting`` one
    claimed before leases existed, goes back to ``queued`` only ``STALE_SUBMITTING`` after it
    was sent (a request that timed out may still be on its way). Otherwise it stays as it is.
    """
    now = now or timezone.now()
    order = Order.objects.select_related("pool").get(pk=order_id)
    if order.status == OrderStatus.SUBMITTING and order.lease_expires_at is not None:
        if order.lease_expires_at > now:
            return ProcessResult(order_id, order.status, f"lease held by {order.lease_owner}")
        results = settle_expired_leases(now, adapter, order_ids=[order_id])
        if results:
            return results[0]
        current = Order.objects.filter(pk=order_id).values_list("status", flat=True).first()
        return ProcessResult(order_id, current or "missing", "settled by another process")
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
            status=OrderStatus.QUEUED,
            status_reason="not found at broker: queued again",
            handed_out_at=now,
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
    """Unknown and accepted orders, and orders stuck in ``submitting``: with an expired
    lease, or claimed before leases existed and sent ``STALE_SUBMITTING`` ago."""
    stuck = Q(status=OrderStatus.SUBMITTING) & (
        Q(lease_expires_at__lte=now)
        | Q(lease_expires_at__isnull=True, submitted_at__lte=now - STALE_SUBMITTING)
    )
    return list(
        Order.objects.filter(Q(status__in=(OrderStatus.UNKNOWN, OrderStatus.ACCEPTED)) | stuck)
        .order_by("id")
        .values_list("id", flat=True)
    )


def settle_expired_leases(
    now: datetime | None = None,
    adapter: ExecutionAdapter | None = None,
    *,
    order_ids: list[int] | None = None,
) -> list[ProcessResult]:
    """Settle every ``submitting`` order whose lease has expired, at once, by a lookup.

    The settler takes each lease over first (one transaction: ``SKIP LOCKED`` on PostgreSQL,
    and an UPDATE that only moves a lease still expired), so two settlers running at once
    never look up the same order; a settler that dies holding them lets its own lease expire
    and the next run takes them. Then, outside any transaction, per order: found at the
    broker → its answer is recorded as the submit's would have been (a fill booked once);
    not found → ``queued`` again and handed to the task queue at once (the broker refuses
    a second order with the same client order id, so a request of the dead worker landing
    late cannot make two); no usable answer → the lease is released for the next run, and
    the order stays ``submitting`` (fail-closed: never sent again blindly).

    ``now`` is the wall clock (a parameter so tests can move it). ``order_ids`` limits the
    run to those orders (``reconcile_order``). Queries: two to take the leases over, then a
    handful per order.
    """
    now = now or timezone.now()
    owner = new_lease_owner()
    results = []
    for order_id in _take_over_expired_leases(now, owner, order_ids):
        try:
            results.append(_settle_held(order_id, owner, now, adapter))
        except Exception:  # one order must not stop the others; its lease expires again
            logger.exception("order %s: settling the expired lease failed", order_id)
    return results


def _take_over_expired_leases(now: datetime, owner: str, order_ids: list[int] | None) -> list[int]:
    expired = Q(status=OrderStatus.SUBMITTING, lease_expires_at__lte=now)
    with transaction.atomic():
        candidates = Order.objects.select_for_update(skip_locked=True).filter(expired)
        if order_ids is not None:
            candidates = candidates.filter(pk__in=order_ids)
        ids = list(
            candidates.order_by("lease_expires_at", "id").values_list("id", flat=True)[
                :RECOVERY_BATCH
            ]
        )
        if not ids:
            return []
        # Conditional on the lease still being expired: on SQLite, where rows are not locked,
        # a second settler's UPDATE finds the lease already taken and moves nothing.
        Order.objects.filter(expired, pk__in=ids).update(
            lease_owner=owner, lease_expires_at=now + timedelta(seconds=LEASE_SECONDS)
        )
        return list(
            Order.objects.filter(pk__in=ids, lease_owner=owner)
            .order_by("id")
            .values_list("id", flat=True)
        )


def _settle_held(
    order_id: int, owner: str, now: datetime, adapter: ExecutionAdapter | None
) -> ProcessResult:
    from execution.dispatch import enqueue_orders

    order = Order.objects.select_related("pool").get(pk=order_id)
    try:
        broker = adapter or build_adapter(order.pool, now)
        response = broker.lookup(order.idempotency_key)
    except Exception as exc:
        logger.exception("order %s: lookup raised", order_id)
        response = ExecutionResponse.unknown(f"adapter_error: {exc}"[:200], {"error": str(exc)})
    held = Order.objects.filter(pk=order_id, status=OrderStatus.SUBMITTING, lease_owner=owner)
    if response.status == ResponseStatus.NOT_FOUND:
        requeued = held.update(
            status=OrderStatus.QUEUED,
            status_reason="lease expired, not found at broker: queued again",
            lease_owner="",
            lease_expires_at=None,
            handed_out_at=now,
        )
        if requeued:
            # Committed (autocommit UPDATE): the task cannot run before the row is queued.
            enqueue_orders([order_id])
            logger.info("order %s: lease expired, not at the broker: queued again", order_id)
            return ProcessResult(order_id, OrderStatus.QUEUED, "lease expired, not at broker")
        return ProcessResult(order_id, order.status, "lease lost: answer not applied")
    if response.status == ResponseStatus.UNKNOWN:
        held.update(lease_expires_at=now)
        logger.warning("order %s: lease expired, lookup failed (%s)", order_id, response.reason)
        return ProcessResult(
            order_id, OrderStatus.SUBMITTING, f"lookup failed: {response.reason}"[:200]
        )
    return record_response(
        order_id, response, now, expected=OrderStatus.SUBMITTING, lease_owner=owner
    )


def sweep_queued_orders(older_than: timedelta, now: datetime | None = None) -> list[int]:
    """Hand out again the orders left ``queued`` longer than ``older_than`` since they were
    created and since they were last handed out.

    The task queue may lose a task (a Redis broker has no delivery receipts; a killed cluster
    loses the tasks it had taken); the ``orders`` table does not. Handing an order out twice
    is harmless: only one worker can claim it. ``handed_out_at`` keeps a backlog from being
    handed out again at every run, and ``SKIP LOCKED`` keeps two sweepers running at once
    (and a worker claiming the order) from handing the same order out twice. Three queries.
    """
    from execution.dispatch import enqueue_orders

    now = now or timezone.now()
    cutoff = now - older_than
    with transaction.atomic():
        ids = list(
            Order.objects.select_for_update(skip_locked=True)
            .filter(status=OrderStatus.QUEUED, created_at__lte=cutoff)
            .filter(Q(handed_out_at__isnull=True) | Q(handed_out_at__lte=cutoff))
            .order_by("created_at", "id")
            .values_list("id", flat=True)[:RECOVERY_BATCH]
        )
        if ids:
            Order.objects.filter(pk__in=ids).update(handed_out_at=now)
    # After the commit (this runs outside any transaction), so a task finds its row queued.
    enqueue_orders(ids)
    return ids
