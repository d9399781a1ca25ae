"""The execution worker (the source, 'Execution Service Processing'): orchestration.

``process_orders(order_ids)`` takes a batch of ``queued`` orders (one task of
``execution.dispatch.enqueue_orders``; ``process_order(order_id)`` is a batch of one) through:

0. before the claim, outside any transaction: the broker account (``broker_account``:
   ``GET /v2/account``, kept a few seconds in the cache; the paper broker's is the pool's
   cash). The gate's ``account`` check judges every order against it (not active, blocked,
   a buy above the buying power the batch's earlier buys left). An account that cannot be
   read leaves the orders ``queued`` for the sweeper (fail-closed, not final);

1. claim (``claim_orders``), one transaction per pool: lock the batch's order rows
   (``SKIP LOCKED`` on PostgreSQL, so two workers never take the same order) and their pool row
   once, check each order's idempotency key, read the account once, and run the execution gate
   (``execution.risk.evaluate_order``) on each order in turn against ``PoolRiskConfig``, the
   account and the trading state as of now, plus the orders of the batch already passed
   (``BatchAccount``: counted as if filled at their estimated value, never in the next order's
   favour, so a batch lets through nothing that one-by-one claims would refuse). Each
   evaluation is stored whatever its outcome (one insert), and each order is marked
   ``submitting`` under the batch's lease (``lease_owner``: who, ``lease_expires_at``: until
   when) or ``risk_rejected`` (one update);
2. submit each claimed order in turn through one adapter (one HTTP session, its connection
   kept alive), outside any transaction (a network call never holds a lock), while one
   ``LeaseRenewal`` thread keeps the lease of every order still held alive, never beyond the
   cap (the task's start plus ``ORDER_TASK_TIMEOUT``). An order the time left cannot cover
   (one more submit's HTTP timeout) is put back to ``queued`` unsent and handed out again;
3. store the answers (``record_responses``): one transaction for the batch's answers, once
   the last order is sent or an answer has waited ``RECORD_WITHIN_S``, the pool row locked
   once; each answer is applied as ``record_response`` applies one (``_apply_answer``: the
   lease cleared, the answer stored, a fill booked: the commitment opened, added to or
   closed, the cash moved), but all at once: the fills by ``portfolio.books.book_fills``, the
   orders by one UPDATE, their events by one INSERT (``_finish_answers``). Should that
   transaction fail, each answer is stored again in a transaction of its own.

Where a check or a write belongs in a transaction: per order of a claim, ``_judge`` (inside
the claim's transaction, the pool locked) and its gate input ``BatchAccount.risk_input``; per
answer, ``_apply_answer`` (inside the answer's transaction, the order and the pool locked),
which both ``record_response`` and ``record_responses`` call.

The gate is the one every order passes, so the trading state is judged when the order is
about to leave, not only when it was decided: an entry queued before a halt, a pool-wide
breaker or its entity's loss cooldown (or handed out again by the sweeper after one) is
``risk_rejected`` with the reason in its ``RiskEvaluation``; a halted pool lets only exits of
units held through. The pool row stays locked from the claim to the decision to submit, so a
halt committed before the claim is seen, and one committed after it waits for the claim.

Fail-closed: an order is submitted only from ``queued``, and it leaves ``queued`` in the same
transaction that decides to submit it. A crash after step 1 leaves the batch's unanswered
orders ``submitting`` with a lease nobody renews; once it expires, ``settle_expired_leases``
looks each order up by its client order id and records the broker's answer or queues it again
(docs/decisions.md, "Leases: recovery in seconds" and "Batched claims"). A rate-limited submit
(429) was not sent: the order is ``queued`` again with ``retry_not_before``. An order of an
entity with another order ``unknown`` or ``submitting`` is left ``queued`` by the claim. Every
change of an order writes its event (``execution.events``) in the transaction that makes it,
after the row. docs/decisions.md, "Order status sync". A timeout, network
error, 5xx or unreadable answer leaves it ``unknown``. Neither is ever sent again blindly:
``reconcile_order`` looks it up first.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

import requests
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from execution.account_rules import AccountCheck, check_account
from execution.adapters import (
    AlpacaHttpAdapter,
    BrokerAccount,
    ExecutionAdapter,
    ExecutionResponse,
    OrderRequest,
    PaperAdapter,
    ResponseStatus,
)
from execution.events import (
    answer_events,
    record_answer_events,
    record_claim_events,
    record_order_events,
)
from execution.keys import client_order_id_for, derive_idempotency_key
from execution.models import (
    Order,
    OrderEvent,
    OrderEventKind,
    OrderSide,
    OrderStatus,
    RiskEvaluation,
)
from execution.ratelimit import execution_api_limiter
from execution.risk import OrderRiskInput, PoolRiskLimits, evaluate_order
from portfolio.books import (
    BookedFill,
    BuyLevelsInputs,
    FillToBook,
    book_fill,
    book_fills,
    buy_levels_inputs,
)
from portfolio.market_calendar import get_market_calendar
from portfolio.models import AdapterKind, Pool
from portfolio.selectors import (
    AccountState,
    account_as_of,
    get_engine_config,
    get_pool_risk_config,
    latest_value,
    rule_config,
)
from portfolio.telemetry import observe_orders_answered
from project.bulk import bulk_update

logger = logging.getLogger(__name__)

ZERO = Decimal("0")


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
#: The wait of the orders-per-minute limit.
RATE_WINDOW = timedelta(minutes=1)
#: An order in these statuses may be at the broker unseen: its entity takes no new order
#: until it is settled (the engine skips it, the loops pass it by, the claim leaves it queued).
UNSETTLED_STATUSES = (OrderStatus.UNKNOWN, OrderStatus.SUBMITTING)
#: Why a claim left an order queued: its entity has another order not settled yet.
UNSETTLED_REASON = "order_unsettled: another order of the entity is unknown or submitting"
#: After a 429 without a reset time, the order waits this long before it is claimed again.
RATE_LIMIT_RETRY = timedelta(seconds=60)


def new_lease_owner() -> str:
    """A name for one claim: ``host:pid:random`` (the random part tells two claims of one
    process apart), at most 100 characters."""
    return f"{socket.gethostname()[:70]}:{os.getpid()}:{secrets.token_hex(4)}"


def renew_leases(owner: str, cap: datetime, now: datetime | None = None) -> int:
    """Move the lease of every ``submitting`` order ``owner`` holds (one claim: one order, or
    the unanswered orders of one batch) to ``now + LEASE_SECONDS``, never beyond ``cap``;
    returns how many it still holds (0: all answered, put back or taken over by the
    settler). One UPDATE."""
    now = now or timezone.now()
    until = min(now + timedelta(seconds=LEASE_SECONDS), cap)
    return Order.objects.filter(status=OrderStatus.SUBMITTING, lease_owner=owner).update(
        lease_expires_at=until
    )


class LeaseRenewal:
    """A daemon thread renewing the leases of one claim every ``LEASE_RENEW_SECONDS`` while
    the block runs.

    It never renews beyond ``cap`` (the task's start plus ``ORDER_TASK_TIMEOUT``: django-q2
    kills a task at its timeout, and ``run_engine``'s submit is bounded by the HTTP timeout),
    and it stops at the first renewal that finds no lease left. A failed renewal (database
    away) is logged and tried again at the next tick. The thread uses its own database
    connection and closes it when done.
    """

    def __init__(self, owner: str, cap: datetime) -> None:
        self.owner = owner
        self.cap = cap
        self._stop = threading.Event()
        #: Held by a renewal's UPDATE, and by the holder while it stores answers
        #: (``paused``): the two never write the same rows at once.
        self._writing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"lease-{owner}", daemon=True)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No renewal runs inside this block (the holder's own writes to the leased rows)."""
        with self._writing:
            yield

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
                    with self._writing:
                        held = renew_leases(self.owner, self.cap)
                except Exception:
                    logger.exception("lease of %s: renewal failed", self.owner)
                    continue
                if not held:
                    if not self._stop.is_set():
                        logger.warning("lease of %s: no order held any more", self.owner)
                    return
        finally:
            connection.close()


class ShadowPoolLiveAdapter(RuntimeError):
    """A shadow pool (``shadow_of_id`` set) asked for an adapter other than paper."""


def _is_shadow_on_live_adapter(pool: Pool) -> bool:
    return getattr(pool, "shadow_of_id", None) is not None and pool.adapter != AdapterKind.PAPER


def build_adapter(
    pool: Pool, now: datetime, session: requests.Session | None = None
) -> ExecutionAdapter:
    """The pool's execution adapter: the in-process paper broker (its account: the pool's
    cash as buying power) or the HTTP execution API (through ``session`` when given, so a
    batch's requests share one kept-alive connection; every request asks the desk's
    client-side limiter first, ``execution_api_limiter``, unless ``EXECUTION_API_RATE_LIMIT``
    is 0).

    Raises ``ShadowPoolLiveAdapter`` for a shadow pool whose adapter is not paper: a shadow
    never trades for real (the last line; the gate refuses its orders too)."""
    if _is_shadow_on_live_adapter(pool):
        raise ShadowPoolLiveAdapter(f"pool {pool.pk} is a shadow pool on adapter {pool.adapter}")
    if pool.adapter == AdapterKind.HTTP:
        if not settings.EXECUTION_API_URL:
            raise RuntimeError("pool uses the http adapter but EXECUTION_API_URL is not set")
        timeout = float(settings.EXECUTION_API_TIMEOUT)
        return AlpacaHttpAdapter(
            settings.EXECUTION_API_URL,
            settings.EXECUTION_API_KEY_ID,
            settings.EXECUTION_API_SECRET_KEY,
            timeout=(min(3.05, timeout), timeout),
            session=session,
            limiter=execution_api_limiter() if settings.EXECUTION_API_RATE_LIMIT else None,
        )
    calendar = get_market_calendar(now)
    config = get_engine_config(pool)
    return PaperAdapter(
        price_of=lambda symbol: latest_value(symbol, now, calendar),
        now=now,
        slippage_bps=config.paper_slippage_bps,
        cash=pool.cash,
    )


#: How long a broker account read is reused by the claims of every process (seconds).
ACCOUNT_CACHE_SECONDS = 5


def account_cache_key(key_id: str | None = None) -> str:
    """The cache key of the broker account of the API key ``key_id`` (default
    ``EXECUTION_API_KEY_ID``): one account per key, whatever URL reaches it; names a hash of
    the key id, never the key."""
    from execution.ratelimit import key_hash

    return "app:execution:account:" + key_hash(
        settings.EXECUTION_API_KEY_ID if key_id is None else key_id
    )


def broker_account(pool: Pool, adapter: ExecutionAdapter) -> BrokerAccount:
    """The broker account an order of ``pool`` is judged against (``GET /v2/account``), read
    outside any transaction, before the claim.

    The HTTP execution API's account is one per API key: read once and kept
    ``ACCOUNT_CACHE_SECONDS`` in the Django cache for every process (``account_cache_key``).
    The paper broker's account is the pool's books (its cash as buying power), read fresh.
    Raises ``BrokerUnavailable`` without a usable answer (the orders then stay queued:
    fail-closed)."""
    if pool.adapter != AdapterKind.HTTP:
        return adapter.account()
    from django.core.cache import cache

    key = account_cache_key()
    try:
        cached = cache.get(key)
    except Exception:  # a cache that cannot answer costs one more read of the broker
        logger.warning("account cache unavailable", exc_info=True)
        cached = None
    if isinstance(cached, BrokerAccount):
        return cached
    account = adapter.account()
    try:
        cache.set(key, account, timeout=ACCOUNT_CACHE_SECONDS)
    except Exception:
        logger.warning("account cache unavailable", exc_info=True)
    return account


def submit_bound(adapter: ExecutionAdapter) -> timedelta:
    """The longest one submit can take: the HTTP adapter's connect plus read timeout; none
    for an adapter without a network."""
    timeout = getattr(adapter, "timeout", None)
    return timedelta(seconds=sum(timeout)) if timeout else timedelta(0)


# --- the batch ------------------------------------------------------------------------------


def process_order(
    order_id: int, now: datetime | None = None, adapter: ExecutionAdapter | None = None
) -> ProcessResult:
    """Take one queued order to the broker and store the outcome: a batch of one.

    Calling it again for the same order changes nothing: only a ``queued`` order is claimed.
    """
    (result,) = process_orders([order_id], now, adapter)
    return result


def process_orders(
    order_ids: list[int], now: datetime | None = None, adapter: ExecutionAdapter | None = None
) -> list[ProcessResult]:
    """Take a batch of queued orders to the broker and store each outcome; see the module
    docstring. One result per id, in the order given.

    The batch is claimed pool by pool (``claim_orders``: one transaction, one pool lock). A
    claim stops before a sell of an entity the same claim buys: the sell's units held depend
    on that buy's answer, so it waits, with every order after it, for the next claim of this
    call, after the answers are stored. Orders put back unsent when time runs out are handed
    out again (``enqueue_orders``) once back in ``queued``.
    """
    from execution.dispatch import enqueue_orders

    now = now or timezone.now()
    # The cap of every lease of this call: django-q2 stops the task its timeout after it
    # started, whatever the claim.
    cap = timezone.now() + timedelta(seconds=settings.ORDER_TASK_TIMEOUT)
    results: dict[int, ProcessResult] = {}
    remaining = list(dict.fromkeys(order_ids))
    first = True
    tried: set[int] = set()
    with requests.Session() as session:
        while remaining:
            # Before the claim's transaction: the pool it will claim for, its adapter and the
            # broker account (a network read never holds a lock).
            target = _next_pool(remaining, tried)
            if target is None:  # nothing left that may be claimed now
                current = dict(Order.objects.filter(pk__in=remaining).values_list("id", "status"))
                results.update(
                    (pk, ProcessResult(pk, current.get(pk, "missing"), "not claimable"))
                    for pk in remaining
                )
                break
            batch_adapter: ExecutionAdapter | None = adapter
            gate = AccountGate()
            if target is not None:
                pool, pool_ids = target
                try:
                    if batch_adapter is None and not _is_shadow_on_live_adapter(pool):
                        batch_adapter = build_adapter(pool, now, session)
                    gate = read_account_gate(pool, now, batch_adapter)
                except Exception as exc:  # BrokerUnavailable, or no adapter: nothing is sent
                    reason = _unavailable_reason(exc)
                    logger.warning(
                        "pool %s: account unavailable (%s); orders stay queued", pool.pk, reason
                    )
                    detail = f"account unavailable: {reason}"[:200]
                    results.update(
                        (pk, ProcessResult(pk, OrderStatus.QUEUED, detail)) for pk in pool_ids
                    )
                    left = set(pool_ids)
                    remaining = [pk for pk in remaining if pk not in left]
                    tried.add(pool.pk)
                    continue
            owner = new_lease_owner()
            claim = claim_orders(
                remaining,
                now,
                owner,
                cap,
                pool_id=None if target is None else target[0].pk,
                gate=gate,
            )
            results.update((r.order_id, r) for r in claim.results)
            remaining = claim.remaining
            if claim.pool is None and target is not None:
                tried.add(target[0].pk)
            if not claim.held:
                continue
            with LeaseRenewal(owner, cap) as renewal:
                if batch_adapter is None:
                    batch_adapter = _Unavailable(RuntimeError("no adapter"))
                answered, put_back = submit_claimed(
                    claim, batch_adapter, now, renewal, send_first=first
                )
            first = False
            results.update((r.order_id, r) for r in answered)
            if put_back:
                enqueue_orders(put_back)
    return [results[pk] for pk in dict.fromkeys(order_ids)]


@dataclass
class AccountGate:
    """What the claim's gate knows of the broker before the claim: the account read (``None``:
    not read, which fails the gate's ``account`` check) and whether the pool is a shadow on a
    live adapter."""

    account: BrokerAccount | None = None
    shadow_live_adapter: bool = False


def read_account_gate(
    pool: Pool, now: datetime, adapter: ExecutionAdapter | None = None
) -> AccountGate:
    """The ``AccountGate`` of a claim for ``pool``, read before the claim's transaction: the
    broker account (``broker_account``), or, for a shadow pool on a live adapter, no account
    and the flag that makes the gate refuse. Raises ``BrokerUnavailable`` (or the adapter's
    error) when the account cannot be read: the caller leaves the orders queued."""
    if _is_shadow_on_live_adapter(pool):
        logger.error(
            "pool %s is a shadow pool on adapter %s: its orders are refused", pool.pk, pool.adapter
        )
        return AccountGate(shadow_live_adapter=True)
    return AccountGate(account=broker_account(pool, adapter or build_adapter(pool, now)))


def _unavailable_reason(exc: Exception) -> str:
    return getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"


def _next_pool(order_ids: list[int], tried: set[int]) -> tuple[Pool, list[int]] | None:
    """The pool of the first of ``order_ids`` still ``queued`` and due (its retry time, if
    any, has come), not in ``tried``, and that pool's ids among them; None when there is
    none. One query."""
    rows = list(
        Order.objects.filter(pk__in=order_ids, status=OrderStatus.QUEUED)
        .filter(_due(timezone.now()))
        .exclude(pool_id__in=tried)
        .order_by("id")
        .values_list("id", "pool_id")
    )
    if not rows:
        return None
    pool_id = rows[0][1]
    pool = Pool.objects.get(pk=pool_id)
    return pool, [pk for pk, pid in rows if pid == pool_id]


def _due(wall_now: datetime) -> Q:
    """A queued order that may be claimed now: no retry time, or one that has come."""
    return Q(retry_not_before__isnull=True) | Q(retry_not_before__lte=wall_now)


class _Unavailable:
    """Stands in for an adapter that could not be built: every submit is ``unknown``."""

    name = "unavailable"

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def submit(self, request: OrderRequest) -> ExecutionResponse:
        raise self.exc


@dataclass
class Claimed:
    """One order claimed for the broker: the row as claimed and the request to send."""

    order: Order
    request: OrderRequest
    #: What the claim changed, to put the order back as it was if it is never sent.
    previous_attempts: int
    previous_submitted_at: datetime | None


@dataclass
class BatchClaim:
    """What one claim did: the orders it holds for the broker under ``owner`` until ``cap``
    (in id order), the results of the orders it settled itself (refused by the gate, a key
    mismatch, not claimable) and the ids it left for the next claim."""

    owner: str
    cap: datetime
    pool: Pool | None = None
    held: list[Claimed] = field(default_factory=list)
    results: list[ProcessResult] = field(default_factory=list)
    remaining: list[int] = field(default_factory=list)


def claim_order(
    order_id: int, now: datetime, owner: str
) -> tuple[Order, OrderRequest, datetime] | ProcessResult:
    """Claim one ``queued`` order for ``owner``: ``claim_orders`` for one id. Returns the
    order, its request and the lease's cap, or the result of an order it did not hold."""
    cap = timezone.now() + timedelta(seconds=settings.ORDER_TASK_TIMEOUT)
    target = _next_pool([order_id], set())
    gate = AccountGate()
    if target is not None:
        try:
            gate = read_account_gate(target[0], now)
        except Exception as exc:  # BrokerUnavailable, or no adapter: the order stays queued
            detail = f"account unavailable: {_unavailable_reason(exc)}"[:200]
            return ProcessResult(order_id, OrderStatus.QUEUED, detail)
    claim = claim_orders([order_id], now, owner, cap, gate=gate)
    if claim.held:
        (held,) = claim.held
        return held.order, held.request, claim.cap
    (result,) = claim.results
    return result


def claim_orders(
    order_ids: list[int],
    now: datetime,
    owner: str,
    cap: datetime,
    *,
    pool_id: int | None = None,
    gate: AccountGate | None = None,
) -> BatchClaim:
    """Claim the ``queued`` orders of ``order_ids`` of one pool for ``owner``, in one
    transaction; see the module docstring. The pool is ``pool_id`` (the one whose broker
    account ``gate`` holds, read before this transaction), else that of the first claimable
    order; the orders of other pools, and the orders from a sell of an entity this claim buys
    on, are left in ``remaining`` for the next claim.

    Left ``queued`` and not claimed (a result each, not in ``remaining``: the sweeper hands
    them out again): an order whose retry time after a rate limit has not come
    (``retry_not_before``, wall clock), and an order of an entity that has another order
    ``unknown`` or ``submitting`` (``order_unsettled``: the entity takes no new order until
    that one is settled, so two orders never overlap at the broker unseen).

    Queries, whatever the size of the batch and of the pool: the orders with their entities,
    the pool with its ``PoolRiskConfig``, the account (``account_as_of``), the orders sent in
    the last minute, the evaluations (one insert), the orders held or refused (one update,
    ``_write_claim``) and their events (one insert); plus one
    to read the status of ids it could not claim, if any. Only the order rows and the pool
    row are locked (``of=("self",)``), not the rows read with them.
    """
    claim = BatchClaim(owner=owner, cap=cap)
    gate = gate or AccountGate()
    # Built once per process (a fraction of a second the first time): before any lock.
    calendar = get_market_calendar(now)
    with transaction.atomic():
        locked = list(
            Order.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("entity")
            .filter(pk__in=order_ids, status=OrderStatus.QUEUED)
            .filter(_due(timezone.now()))
            .order_by("id")
        )
        by_id = {order.pk: order for order in locked}
        unclaimable = [pk for pk in order_ids if pk not in by_id]
        if unclaimable:
            current = dict(Order.objects.filter(pk__in=unclaimable).values_list("id", "status"))
            claim.results += [
                ProcessResult(pk, current.get(pk, "missing"), "not claimable") for pk in unclaimable
            ]
        if pool_id is None and locked:
            pool_id = locked[0].pool_id
        orders = [order for order in locked if order.pool_id == pool_id]
        if not orders:
            claim.remaining = [pk for pk in order_ids if pk in by_id]
            return claim
        unsettled = set(
            Order.objects.filter(
                pool_id=pool_id,
                entity_id__in={order.entity_id for order in orders},
                status__in=UNSETTLED_STATUSES,
            ).values_list("entity_id", flat=True)
        )
        if unsettled:
            waiting = [order for order in orders if order.entity_id in unsettled]
            claim.results += [
                ProcessResult(order.pk, OrderStatus.QUEUED, UNSETTLED_REASON) for order in waiting
            ]
            orders = [order for order in orders if order.entity_id not in unsettled]
            waiting_ids = {order.pk for order in waiting}
            by_id = {pk: order for pk, order in by_id.items() if pk not in waiting_ids}
            if not orders:
                claim.remaining = [pk for pk in order_ids if pk in by_id]
                return claim
        if gate.account is None and not gate.shadow_live_adapter:
            # No account read before the claim: judge nothing, leave them queued (fail-closed,
            # not final: the sweeper hands them out again).
            claim.results += [
                ProcessResult(order.pk, OrderStatus.QUEUED, "account unavailable: not read")
                for order in orders
            ]
            left = {order.pk for order in orders}
            claim.remaining = [pk for pk in order_ids if pk in by_id and pk not in left]
            return claim
        pool = (
            Pool.objects.select_for_update(of=("self",))
            .select_related("risk_config")
            .get(pk=pool_id)
        )
        claim.pool = pool
        limits = _limits(pool)
        state = account_as_of(
            pool, now, extra_symbols={order.entity_id for order in orders}, calendar=calendar
        )
        cutoff = now - RATE_WINDOW
        account = BatchAccount(
            state,
            broker=gate.account,
            shadow_live_adapter=gate.shadow_live_adapter,
            sent_last_minute=Order.objects.filter(pool=pool, submitted_at__gt=cutoff)
            .exclude(pk__in=[order.pk for order in locked])
            .count(),
            recently_sent={
                order.pk: order.submitted_at is not None and order.submitted_at > cutoff
                for order in orders
            },
        )
        claimed_at = timezone.now()  # a lease measures a process's life: the wall clock
        lease_until = min(claimed_at + timedelta(seconds=LEASE_SECONDS), cap)
        evaluations, judged = [], []
        for order in orders:
            if account.waits_for_a_buy(order):
                break
            order.pool = pool
            judged.append(order)
            held = _judge(order, account, limits, now, owner, lease_until, evaluations)
            if isinstance(held, ProcessResult):
                claim.results.append(held)
            else:
                claim.held.append(held)
        judged_ids = {order.pk for order in judged}
        claim.remaining = [pk for pk in order_ids if pk in by_id and pk not in judged_ids]
        RiskEvaluation.objects.bulk_create(evaluations)
        _write_claim(judged, claimed_at)
        # The events after the rows they describe, in the same transaction.
        record_claim_events(judged, now)
    return claim


def _write_claim(judged: list[Order], claimed_at: datetime) -> None:
    """The claim's writes: one UPDATE of every judged order (``_update_orders``), held under
    the lease or refused, each with its own status and request."""
    for order in judged:
        order.updated_at = claimed_at
    _update_orders(judged, CLAIM_FIELDS)


#: What a claim changes on an order (``_judge``): a refused order only the first three.
CLAIM_FIELDS = (
    "status",
    "status_reason",
    "updated_at",
    "attempts",
    "submitted_at",
    "request_payload",
    "lease_owner",
    "lease_expires_at",
)


def _update_orders(orders: list[Order], fields: Iterable[str]) -> None:
    """Write ``fields`` of ``orders``, rows this transaction locked and read, in ONE UPDATE
    (``project.bulk.bulk_update``), where ``save(update_fields=...)`` would take one per order:
    a field an order did not change is written as it was read. Like that save, it raises when
    a row is not there."""
    if not orders:
        return
    updated = bulk_update(Order, orders, fields)
    if updated != len(orders):
        raise DatabaseError(f"{len(orders)} orders to update, {updated} updated")


def _judge(
    order: Order,
    account: BatchAccount,
    limits: PoolRiskLimits,
    now: datetime,
    owner: str,
    lease_until: datetime,
    evaluations: list[RiskEvaluation],
) -> Claimed | ProcessResult:
    """One order of a claim, in memory: its key checked, the gate run against ``account``
    (which then counts it if it passed), its evaluation added to ``evaluations`` and the order
    marked ``submitting`` under the lease or refused. Written by the claim's bulk writes."""
    expected = derive_idempotency_key(
        order.entity_id, order.action, order.quantity, order.reference
    )
    if expected != order.idempotency_key:
        order.status = OrderStatus.REJECTED
        order.status_reason = "idempotency_key_mismatch"
        return ProcessResult(order.pk, order.status, order.status_reason)
    evaluation = evaluate_order(account.risk_input(order), limits)
    evaluations.append(
        RiskEvaluation(
            order=order,
            pool=order.pool,
            passed=evaluation.passed,
            reasons=list(evaluation.reasons),
            checks=list(evaluation.checks),
            evaluated_at=now,
        )
    )
    if not evaluation.passed:
        order.status = OrderStatus.RISK_REJECTED
        order.status_reason = ", ".join(evaluation.reasons)[:200]
        logger.info("order %s: risk evaluation failed: %s", order.pk, order.status_reason)
        return ProcessResult(order.pk, order.status, order.status_reason)
    account.count_passed(order)
    request = OrderRequest(
        client_order_id=client_order_id_for(order.idempotency_key),
        symbol=order.entity_id,
        side=order.side,
        quantity=order.quantity,
    )
    claimed = Claimed(order, request, order.attempts, order.submitted_at)
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
    order.lease_owner = owner
    order.lease_expires_at = lease_until
    return claimed


def _limits(pool: Pool) -> PoolRiskLimits:
    """The gate's limits; no query when ``pool`` was read with its ``risk_config``."""
    return rule_config(PoolRiskLimits, get_pool_risk_config(pool))


class BatchAccount:
    """The account one claim's gate judges each order against: the state as of the claim
    (the read model's ``account_as_of``), plus the orders of the same claim already passed.

    A passed order is not filled yet; it is counted as if filled at its estimated value, and
    every figure moves only in the direction that makes the next order's checks harder, never
    easier, than one-by-one claims would make them (each claim seeing the earlier orders
    filled): so the batch lets through nothing that orders claimed one by one would refuse.

    - a buy adds ``quantity × max(current value, estimated value)`` to its sector's value,
      one open commitment when its entity holds none (then counts as held), lowers the total
      value and the day's gain by what it would lose at once (``quantity × (current −
      reference)`` where negative: the reference is its estimated value, or the previous close
      for an add to a commitment opened before today's session), and never raises them;
    - a sell lowers the units left to sell of its entity (none left: a later buy opens a new
      commitment, while the open commitments are not lowered), and lowers the total value and
      the day's gain by what it would realize below the current value and the day's reference
      (never raises them); it never lowers its sector's value;
    - every passed order counts in the orders sent in the last minute; an order of the batch
      sent before in the last minute (queued again since) counts for the others, as its row
      would one by one.

    A sell of an entity the claim buys is not judged here (``waits_for_a_buy``): its units
    held depend on that buy's answer. Pure: no query, no clock.
    """

    def __init__(
        self,
        state: AccountState,
        *,
        sent_last_minute: int,
        recently_sent: dict[int, bool],
        broker: BrokerAccount | None = None,
        shadow_live_adapter: bool = False,
    ) -> None:
        self.state = state
        self.broker = broker
        self.shadow_live_adapter = shadow_live_adapter
        #: The broker's buying power left after the buys of the batch already passed.
        self.buying_power = broker.buying_power if broker is not None else ZERO
        self.total_value = state.total_value
        self.daily_gain = state.daily_gain
        self.sector_added: dict[str, Decimal] = {}
        self.open_commitments = len(state.positions)
        self.holding = set(state.held)
        self.units_left = {symbol: p.units for symbol, p in state.held.items()}
        self.bought: set[str] = set()
        self.sent_outside = sent_last_minute
        self.recently_sent = recently_sent
        # Orders of the batch whose earlier send counts for the others, until they pass.
        self.recent_unpassed = sum(recently_sent.values())
        self.passed = 0

    def waits_for_a_buy(self, order: Order) -> bool:
        return order.side == OrderSide.SELL and order.entity_id in self.bought

    def risk_input(self, order: Order) -> OrderRiskInput:
        """The gate's input for ``order`` (which must carry its entity)."""
        symbol = order.entity_id
        sector = order.entity.sector
        breakers = self.state.breakers
        others_recent = self.recent_unpassed - int(self.recently_sent.get(order.pk, False))
        return OrderRiskInput(
            side=order.side,
            symbol=symbol,
            sector=sector,
            quantity=order.quantity,
            estimated_value=order.estimated_value,
            opens_new_commitment=symbol not in self.holding,
            open_commitments=self.open_commitments,
            sector_value=self.state.sector_value(sector) + self.sector_added.get(sector, ZERO),
            total_value=self.total_value,
            daily_gain=self.daily_gain,
            orders_last_minute=self.sent_outside + self.passed + others_recent,
            held_units=self.units_left.get(symbol, ZERO),
            halted=self.state.halted,
            breakers_in_force=breakers.pool_wide,
            breaker_until=breakers.until,
            entity_cooldown_until=breakers.entity_cooldowns.get(symbol),
            reduce_only=symbol in self.state.reduce_only,
            account=self.account_check(order),
            shadow_live_adapter=self.shadow_live_adapter,
        )

    def account_check(self, order: Order) -> AccountCheck | None:
        """``check_account`` of ``order`` against the broker account with the buying power
        left (None: the account was not read)."""
        if self.broker is None:
            return None
        left = replace(self.broker, buying_power=self.buying_power)
        return check_account(left, order.side, order.notional)

    def count_passed(self, order: Order) -> None:
        """Count ``order``, which passed the gate, for the orders after it."""
        symbol, units, estimated = order.entity_id, order.quantity, order.estimated_value
        self.passed += 1
        self.recent_unpassed -= int(self.recently_sent.get(order.pk, False))
        if order.side == OrderSide.BUY:
            # The broker's buying power a buy takes; a sell frees some only once filled.
            self.buying_power -= order.notional
        position = self.state.held.get(symbol)
        current = self.state.market.latest.get(symbol)
        if order.side == OrderSide.BUY:
            value = current if current is not None else estimated
            sector = order.entity.sector
            self.sector_added[sector] = self.sector_added.get(sector, ZERO) + units * max(
                value, estimated
            )
            reference = estimated
            if (
                symbol in self.holding
                and position is not None
                and (position.opened_at is None or position.opened_at < self.state.session_open)
            ):
                previous = self.state.market.previous_close(symbol, self.state.session)
                reference = max(estimated, previous if previous is not None else estimated)
            self.total_value += min(ZERO, units * (value - estimated))
            self.daily_gain += min(ZERO, units * (value - reference))
            if symbol not in self.holding:
                self.open_commitments += 1
                self.holding.add(symbol)
            self.bought.add(symbol)
            return
        self.units_left[symbol] = self.units_left.get(symbol, ZERO) - units
        if self.units_left[symbol] <= 0:
            self.holding.discard(symbol)
        if position is None:
            return
        realized = units * (estimated - position.entry_value)
        self.total_value += min(ZERO, units * (estimated - position.mark))
        if position.current_value is None:
            unrealized = ZERO  # the day's gain does not count a position without a value
        else:
            opened_today = (
                position.opened_at is not None and position.opened_at >= self.state.session_open
            )
            previous = self.state.market.previous_close(symbol, self.state.session)
            reference = position.entry_value if opened_today or previous is None else previous
            unrealized = units * (position.current_value - reference)
        self.daily_gain += min(ZERO, realized - unrealized)


#: An answer waits at most about this long (seconds) for the batch's next answers before
#: the answers so far are stored together (``record_responses``): a slow broker never keeps
#: a batch's fills out of the books for long.
RECORD_WITHIN_S = 1.0


def submit_claimed(
    claim: BatchClaim,
    adapter: ExecutionAdapter,
    now: datetime,
    renewal: LeaseRenewal | None = None,
    *,
    send_first: bool = True,
) -> tuple[list[ProcessResult], list[int]]:
    """Send the claim's orders one after the other through ``adapter``, and store their
    answers together (``record_responses``: one transaction, one pool lock) once the last is
    sent, or sooner when the oldest answer not yet stored has waited ``RECORD_WITHIN_S``.

    Before each order, if the time left before the cap cannot cover one more submit
    (``submit_bound``), it and the orders after it are put back unsent
    (``put_back_unsent``); with ``send_first`` the first is sent whatever the time left, as a
    lone order always was (a task's first claim; a later claim of the same task has no such
    allowance). ``renewal`` (the claim's ``LeaseRenewal``) is paused while answers are
    stored. Returns a result for every order of the claim, and the ids put back (for the
    caller to hand out once this returns)."""
    pause = renewal.paused if renewal is not None else nullcontext
    results: list[ProcessResult] = []
    answers: list[tuple[int, ExecutionResponse]] = []
    oldest = 0.0
    bound = submit_bound(adapter)
    put_back: list[int] = []
    for n, held in enumerate(claim.held):
        if (n or not send_first) and timezone.now() + bound >= claim.cap:
            with pause():
                unsent, put_back = put_back_unsent(claim.held[n:], claim.owner)
            results += unsent
            break
        order_id = held.order.pk
        try:
            response = adapter.submit(held.request)
        except Exception as exc:  # an adapter bug must not look like "not sent"
            logger.exception("order %s: adapter raised; the outcome is unknown", order_id)
            response = ExecutionResponse.unknown(f"adapter_error: {exc}"[:200], {"error": str(exc)})
        if not answers:
            oldest = time.monotonic()
        answers.append((order_id, response))
        if time.monotonic() - oldest >= RECORD_WITHIN_S:
            with pause():
                results += record_responses(answers, now, lease_owner=claim.owner)
            answers = []
    with pause():
        results += record_responses(answers, now, lease_owner=claim.owner)
    return results, put_back


#: Why an order was put back: it was claimed, never sent, and the task's time ran out.
PUT_BACK_REASON = "put back unsent: the task's time ran out"


def put_back_unsent(unsent: list[Claimed], owner: str) -> tuple[list[ProcessResult], list[int]]:
    """Return claimed orders that were never sent to ``queued`` as they were before the claim
    (attempts, submitted time), lease cleared, in one transaction; only those still held by
    ``owner`` (one whose lease was taken over is left to its new holder). Returns a result
    for each, and the ids put back: the caller hands them out again once this has committed.
    Queries: the orders (locked), their update."""
    with transaction.atomic():
        rows = {
            order.pk: order
            for order in Order.objects.select_for_update(of=("self",)).filter(
                pk__in=[c.order.pk for c in unsent]
            )
        }
        back, results = [], []
        handed_out_at = timezone.now()
        for claimed in unsent:
            order = rows.get(claimed.order.pk)
            if (
                order is None
                or order.status != OrderStatus.SUBMITTING
                or order.lease_owner != owner
            ):
                status = order.status if order is not None else "missing"
                results.append(ProcessResult(claimed.order.pk, status, "lease lost before sending"))
                continue
            order.status = OrderStatus.QUEUED
            order.status_reason = PUT_BACK_REASON
            order.attempts = claimed.previous_attempts
            order.submitted_at = claimed.previous_submitted_at
            order.lease_owner = ""
            order.lease_expires_at = None
            order.handed_out_at = handed_out_at
            order.updated_at = handed_out_at
            back.append(order)
            results.append(ProcessResult(order.pk, OrderStatus.QUEUED, PUT_BACK_REASON))
        Order.objects.bulk_update(
            back,
            [
                "status",
                "status_reason",
                "attempts",
                "submitted_at",
                "lease_owner",
                "lease_expires_at",
                "handed_out_at",
                "updated_at",
            ],
        )
        record_order_events(
            back, OrderEventKind.REQUEUED, timezone.now(), previous_status=OrderStatus.SUBMITTING
        )
    if back:
        logger.warning("%s order(s) put back unsent: the task's time ran out", len(back))
    return results, [order.pk for order in back]


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
    kind: str = OrderEventKind.ANSWERED,
) -> ProcessResult:
    """Store the broker's answer and, on a fill, move the commitment and the cash: one
    transaction (``record_responses`` stores a batch's answers in one). ``kind`` is the
    order event it records: ``answered`` for the submit's answer, ``reconciled`` for a
    lookup's (``reconcile_order``, the lease settler, the order status sync).

    Only an order still in ``expected`` status is changed, so an answer is applied once.
    With ``lease_owner`` (the worker's or the settler's answer) the order must also still be
    held by that lease, which this transaction clears. An answer that comes back after its
    lease was lost is applied only when it says the broker holds the order and the books say
    it is not there (queued again or stopped by the gate since); otherwise the broker's answer
    is left to the current holder, whose submit is refused as a duplicate and resolved by
    lookup. Every fill increment is booked as it arrives (a partial fill too; the order status
    sync, ``execution.sync``, reads the next ones from the broker), once.

    Queries: the order (with its recommendation's arrival), the pool (with its engine
    configuration), then ``_apply_answer``'s. Only the order and pool rows are locked
    (``of=("self",)``), not the rows read with them.
    """
    with transaction.atomic():
        order = _lock_for_answers([order_id]).get(order_id)
        if order is None:
            raise Order.DoesNotExist(f"order {order_id} does not exist")
        refused = _answer_refused(order, response, expected, lease_owner)
        if refused is not None:
            return refused
        result = _apply_answer(
            order, _lock_pool_for_answers(order.pool_id), response, now, kind=kind
        )
    _log_unknown(result, response)
    return result


def record_responses(
    answers: list[tuple[int, ExecutionResponse]], now: datetime, *, lease_owner: str
) -> list[ProcessResult]:
    """Store the answers of one claim's orders (all of one pool, all ``submitting`` under
    ``lease_owner``), as ``record_response`` would one by one, in ONE transaction: the orders
    locked by one query, the pool row once, then each answer applied (``_apply_answer``).

    Should storing one answer fail (an error while booking it), the whole transaction rolls
    back and each answer is stored again on its own (``record_response``), so one bad answer
    costs the others nothing; its own order stays ``submitting`` under the lease, which then
    expires, and the settler books it from a lookup, as after a crash.

    Queries: the orders, the pool, the tier and the bars for the ATRs of the buys it books
    (``buy_levels_inputs``, once for all; none without a buy), the fills booked at once
    (``book_fills``: a fixed number), then the orders' update, their events' insert and, for
    orders of recommendations, one upsert of their latencies (``_finish_answers``): a fixed
    number whatever the size of the batch. Returns one result per answer, in the order
    given."""
    if not answers:
        return []
    try:
        with transaction.atomic():
            orders = _lock_for_answers([order_id for order_id, _ in answers])
            pool = None
            results: list[ProcessResult | _Pending] = []
            for order_id, response in answers:
                order = orders.get(order_id)
                if order is None:
                    results.append(ProcessResult(order_id, "missing", "answer not applied"))
                    continue
                refused = _answer_refused(order, response, OrderStatus.SUBMITTING, lease_owner)
                if refused is not None:
                    results.append(refused)
                    continue
                if pool is None:
                    pool = _lock_pool_for_answers(order.pool_id)
                    levels = _levels_inputs(pool, orders, answers, now)
                results.append(_prepare_answer(order, pool, response, now))
            pending = [p for p in results if isinstance(p, _Pending)]
            fills = [p.fill for p in pending if p.fill is not None]
            booked = iter(book_fills(pool, fills, now=now, levels_inputs=levels) if fills else [])
            finished = iter(
                _finish_answers(
                    pending, [next(booked) if p.fill is not None else None for p in pending], now
                )
            )
            results = [next(finished) if isinstance(r, _Pending) else r for r in results]
    except Exception:
        if len(answers) == 1:
            raise
        logger.exception("storing %s answers together failed; storing each alone", len(answers))
        return [
            _record_alone(order_id, response, now, lease_owner) for order_id, response in answers
        ]
    for result, (_, response) in zip(results, answers, strict=True):
        _log_unknown(result, response)
    return results


def _record_alone(
    order_id: int, response: ExecutionResponse, now: datetime, lease_owner: str
) -> ProcessResult:
    try:
        return record_response(
            order_id, response, now, expected=OrderStatus.SUBMITTING, lease_owner=lease_owner
        )
    except Exception:
        logger.exception("order %s: storing the answer failed; the lease settles it", order_id)
        return ProcessResult(order_id, OrderStatus.SUBMITTING, "answer not stored")


def _levels_inputs(
    pool: Pool,
    orders: dict[int, Order],
    answers: list[tuple[int, ExecutionResponse]],
    now: datetime,
) -> BuyLevelsInputs | None:
    """What the buys these answers fill take their levels from, read once for all of them
    (``buy_levels_inputs``: two queries), or None when no answer books a buy."""
    bought = {
        orders[order_id].entity_id
        for order_id, response in answers
        if order_id in orders
        and orders[order_id].side == OrderSide.BUY
        and response.filled_quantity > (orders[order_id].filled_quantity or ZERO)
    }
    return buy_levels_inputs(pool, bought, now) if bought else None


def _lock_for_answers(order_ids: list[int]) -> dict[int, Order]:
    """The orders, locked, with their recommendation's arrival. One query."""
    return {
        order.pk: order
        for order in Order.objects.select_for_update(of=("self",))
        .annotate(recommendation_received_at=F("recommendation__received_at"))
        .filter(pk__in=order_ids)
    }


def _lock_pool_for_answers(pool_id: int) -> Pool:
    """The pool row, locked, with its engine configuration (``book_fill`` reads it). One
    query."""
    return (
        Pool.objects.select_for_update(of=("self",)).select_related("engine_config").get(pk=pool_id)
    )


def _answer_refused(
    order: Order, response: ExecutionResponse, expected: str, lease_owner: str | None
) -> ProcessResult | None:
    """Why the answer must not be applied to ``order`` (see ``record_response``), or None."""
    if lease_owner is not None and (order.status != expected or order.lease_owner != lease_owner):
        if not (order.status in _NOT_AT_BROKER and response.status in _BROKER_HOLDS):
            return ProcessResult(order.pk, order.status, "lease lost: answer not applied")
        logger.warning(
            "order %s: %s answer after the lease was lost; the broker holds it",
            order.pk,
            response.status,
        )
    elif order.status != expected:
        return ProcessResult(order.pk, order.status, "answer already recorded")
    return None


def _apply_answer(
    order: Order,
    pool: Pool,
    response: ExecutionResponse,
    now: datetime,
    levels: BuyLevelsInputs | None = None,
    *,
    kind: str = OrderEventKind.ANSWERED,
) -> ProcessResult:
    """Apply one answer to ``order`` and the books, inside the caller's transaction, with the
    order and ``pool`` rows locked by it: the lease cleared, the status and the broker's
    answer stored, the fill increment booked (``book_fill``), the order's events recorded
    (``kind``, and ``filled`` for an increment), the latency observed.

    Every answer that raises the filled quantity books the increment, as it arrives: units
    ``new − old``, at the increment's own value per unit (``(new avg × new qty − old avg ×
    old qty) / increment``), under the order's new cumulative quantity (the fills table's
    unique (order, order_filled_quantity) books it once). An answer that says less was filled
    than the books already hold books nothing.

    A rate-limited answer (HTTP 429, or the client-side limiter: ``retryable``) means the order
    was not sent: it goes back to ``queued`` with ``retry_not_before`` (the broker's reset,
    else ``RATE_LIMIT_RETRY`` from now, wall clock), not claimed before then and handed out
    again by the sweeper after it.

    Queries: ``book_fill``'s for a fill (four, plus the tier and the bars for a buy without
    ``levels``), the order's update, the events' insert, and the latency histogram's upsert
    for an order of a recommendation."""
    prepared = _prepare_answer(order, pool, response, now, kind=kind)
    if isinstance(prepared, ProcessResult):
        return prepared
    fill = prepared.fill
    booked = None
    if fill is not None:
        booked = book_fill(
            pool,
            entity_id=fill.entity_id,
            side=fill.side,
            units=fill.units,
            value=fill.value,
            filled_at=fill.filled_at,
            now=now,
            reason=fill.reason,
            order_id=fill.order_id,
            order_filled_quantity=fill.order_filled_quantity,
            levels_inputs=levels,
        )
    return _finish_answer(prepared, booked, now)


@dataclass
class _Pending:
    """An answer applied to its order in memory, its fill increment (if any) not booked yet."""

    order: Order
    changed: list[str]
    previous: str
    previous_filled: Decimal
    kind: str
    fill: FillToBook | None


def _prepare_answer(
    order: Order,
    pool: Pool,
    response: ExecutionResponse,
    now: datetime,
    *,
    kind: str = OrderEventKind.ANSWERED,
) -> ProcessResult | _Pending:
    """``_apply_answer`` up to the booking: the order changed in memory and the fill increment
    to book; a rate-limited answer is stored at once (its result)."""
    previous = order.status
    previous_filled = order.filled_quantity
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
    order.response_payload = response.raw
    if response.status == ResponseStatus.REJECTED and response.retryable:
        wall_now = timezone.now()
        order.status = OrderStatus.QUEUED
        order.retry_not_before = response.retry_at or wall_now + RATE_LIMIT_RETRY
        order.status_reason = (
            f"{response.reason or 'rate_limited'}: retry after {order.retry_not_before.isoformat()}"
        )[:200]
        order.handed_out_at = wall_now
        changed += ["retry_not_before", "handed_out_at"]
        order.save(update_fields=changed)
        record_answer_events(
            order,
            previous_status=previous,
            previous_filled_quantity=previous_filled,
            now=now,
            kind=OrderEventKind.REQUEUED,
        )
        logger.info(
            "order %s: rate limited, queued again until %s", order.pk, order.retry_not_before
        )
        return ProcessResult(order.pk, order.status, order.status_reason)
    order.status = _STATUS_FOR.get(response.status, OrderStatus.UNKNOWN)
    order.status_reason = response.reason[:200]
    order.broker_order_id = response.broker_order_id or order.broker_order_id
    old_qty = order.filled_quantity or ZERO
    new_qty = response.filled_quantity
    if response.has_fill and new_qty < old_qty:
        logger.error(
            "order %s: the broker says %s filled, the books hold %s; nothing booked",
            order.pk,
            new_qty,
            old_qty,
        )
    elif response.has_fill and new_qty > old_qty and response.fill_value is not None:
        increment = new_qty - old_qty
        old_value = order.fill_value or ZERO
        value = (response.fill_value * new_qty - old_value * old_qty) / increment
        order.filled_quantity = new_qty
        order.fill_value = response.fill_value
        order.filled_at = response.filled_at or now
        fill = FillToBook(
            entity_id=order.entity_id,
            side=order.side,
            units=increment,
            value=value,
            filled_at=order.filled_at,
            reason=order.reason,
            order_id=order.pk,
            order_filled_quantity=new_qty,
        )
        changed += ["filled_quantity", "fill_value", "filled_at", "commitment", "realized_gain"]
    else:
        fill = None
    return _Pending(order, changed, previous, previous_filled, kind, fill)


def _finish_answer(pending: _Pending, booked: BookedFill | None, now: datetime) -> ProcessResult:
    """The rest of ``_apply_answer`` once the increment is booked (``_finish_answers``)."""
    (result,) = _finish_answers([pending], [booked], now)
    return result


def _finish_answers(
    pending: list[_Pending], booked: list[BookedFill | None], now: datetime
) -> list[ProcessResult]:
    """The rest of ``_apply_answer`` for answers whose increments are booked (``booked``, one
    per answer, None for none): what the booking did on each order, then, for all of them at
    once, the orders' update (``_update_orders``: the fields any of them changed; the others
    are written as they were read, under this transaction's lock), their events' insert and
    the latencies observed. Three queries, whatever the number of answers (the observation's
    only when one counts)."""
    if not pending:
        return []
    updated_at = timezone.now()  # what ``save`` writes in the ``auto_now`` field
    fields: dict[str, None] = {}
    for answer, fill in zip(pending, booked, strict=True):
        order = answer.order
        if fill is not None:
            order.commitment = fill.commitment or order.commitment
            if fill.realized_gain is not None:
                order.realized_gain = (order.realized_gain or ZERO) + fill.realized_gain
        order.updated_at = updated_at
        fields.update(dict.fromkeys(answer.changed))
    orders = [answer.order for answer in pending]
    _update_orders(orders, fields)
    recorded_at = timezone.now()
    OrderEvent.objects.bulk_create(
        [
            event
            for answer in pending
            for event in answer_events(
                answer.order,
                previous_status=answer.previous,
                previous_filled_quantity=answer.previous_filled,
                now=now,
                kind=answer.kind,
                recorded_at=recorded_at,
            )
        ]
    )
    observe_orders_answered(
        [
            (answer.order, answer.previous, answer.order.recommendation_received_at)
            for answer in pending
        ],
        now,
    )
    return [ProcessResult(order.pk, order.status, order.status_reason) for order in orders]


def _log_unknown(result: ProcessResult, response: ExecutionResponse) -> None:
    if result.status == OrderStatus.UNKNOWN:
        logger.warning(
            "order %s: outcome unknown (%s); reconcile", result.order_id, response.reason
        )


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
    if order.status in WORKING_STATUSES:
        # At the broker, still worked: the order status sync reads it (fills as they come,
        # replacements followed).
        from execution.sync import sync_order_status

        return sync_order_status(order_id, now, adapter)
    stale = order.submitted_at is None or order.submitted_at <= now - STALE_SUBMITTING
    if order.status != OrderStatus.UNKNOWN and not (
        order.status == OrderStatus.SUBMITTING and stale
    ):
        return ProcessResult(order_id, order.status, "nothing to reconcile")
    adapter = adapter or build_adapter(order.pool, now)
    response = adapter.lookup(order.client_order_id)
    if response.status == ResponseStatus.NOT_FOUND:
        if not stale:
            # A request that timed out may still be on its way: give it time to land.
            return ProcessResult(order_id, order.status, "not found at broker yet")
        requeued = _requeue(
            Order.objects.filter(pk=order_id, status=order.status),
            order.status,
            now,
            status_reason="not found at broker: queued again",
            handed_out_at=now,
        )
        return ProcessResult(
            order_id, OrderStatus.QUEUED if requeued else order.status, "not found at broker"
        )
    if response.is_replaced:
        from execution.sync import follow_replacements

        response = follow_replacements(adapter, response)
    if response.status == ResponseStatus.UNKNOWN:
        return ProcessResult(order_id, order.status, f"still {response.reason or 'open'}")
    return record_response(
        order_id, response, now, expected=order.status, kind=OrderEventKind.RECONCILED
    )


#: Statuses of an order the broker holds and is still working: the order status sync's.
WORKING_STATUSES = (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)


def _requeue(rows, previous_status: str, now: datetime, **changes) -> bool:
    """Put the order of ``rows`` (a queryset of one order, conditional on its state) back to
    ``queued`` with ``changes``, and record its ``requeued`` event after the row, in one
    transaction. True when it was put back."""
    with transaction.atomic():
        order = rows.first()
        if order is None or not rows.update(status=OrderStatus.QUEUED, **changes):
            return False
        for name, value in changes.items():
            setattr(order, name, value)
        order.status = OrderStatus.QUEUED
        record_order_events([order], OrderEventKind.REQUEUED, now, previous_status=previous_status)
    return True


def orders_to_reconcile(now: datetime) -> list[int]:
    """Unknown, accepted and partially filled orders, and orders stuck in ``submitting``: with
    an expired lease, or claimed before leases existed and sent ``STALE_SUBMITTING`` ago."""
    stuck = Q(status=OrderStatus.SUBMITTING) & (
        Q(lease_expires_at__lte=now)
        | Q(lease_expires_at__isnull=True, submitted_at__lte=now - STALE_SUBMITTING)
    )
    return list(
        Order.objects.filter(Q(status__in=(OrderStatus.UNKNOWN, *WORKING_STATUSES)) | stuck)
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
        response = broker.lookup(order.client_order_id)
    except Exception as exc:
        logger.exception("order %s: lookup raised", order_id)
        response = ExecutionResponse.unknown(f"adapter_error: {exc}"[:200], {"error": str(exc)})
    held = Order.objects.filter(pk=order_id, status=OrderStatus.SUBMITTING, lease_owner=owner)
    if response.is_replaced:
        from execution.sync import follow_replacements

        response = follow_replacements(broker, response)
    if response.status == ResponseStatus.NOT_FOUND:
        requeued = _requeue(
            held,
            OrderStatus.SUBMITTING,
            now,
            status_reason="lease expired, not found at broker: queued again",
            lease_owner="",
            lease_expires_at=None,
            handed_out_at=now,
        )
        if requeued:
            # Committed (its transaction has ended): the task cannot run before the row is
            # queued.
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
        order_id,
        response,
        now,
        expected=OrderStatus.SUBMITTING,
        lease_owner=owner,
        kind=OrderEventKind.RECONCILED,
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
            .filter(_due(now))
            .order_by("created_at", "id")
            .values_list("id", flat=True)[:RECOVERY_BATCH]
        )
        if ids:
            Order.objects.filter(pk__in=ids).update(handed_out_at=now)
    # After the commit (this runs outside any transaction), so a task finds its row queued.
    enqueue_orders(ids)
    return ids
