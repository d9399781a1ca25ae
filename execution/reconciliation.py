"""Position reconciliation (orchestration): the pool's books against the broker's account.

``reconcile_positions(pool, now)`` asks the pool's broker (its execution adapter,
``execution.worker.build_adapter``) for its open positions (``GET /v2/positions``) and, where
the rule below allows it, its account's cash (``GET /v2/account``), compares them with the
units of the open commitments and the pool's cash (``portfolio.reconciliation_rules``), and
records each difference as a ``ReconciliationEvent``. An entity with an open event on its
units is held reduce-only (the decision engine skips its entries with
``reconciliation_hold``, the execution gate refuses its buys) until an operator acknowledges
the event (``portfolio.actions.acknowledge_reconciliation``).

Reconciliation never sends an order and never writes the books: it only records what differs.

- **The account.** Every pool on the HTTP adapter trades through the one execution API account
  (``EXECUTION_API_URL``), so the broker's positions are compared with the units of the open
  commitments of all those pools together; a difference is recorded for the pool being
  reconciled (each pool's own run records it for itself). A pool on the paper broker is not
  reconciled: the paper broker keeps no account of its own (it fills in the worker's process
  and forgets), so its positions are the books; given an adapter explicitly, a paper pool is
  compared with its own books alone.
- **Cash** is compared only for a pool on the HTTP adapter that is the only pool on it (the
  account's cash is then the pool's cash, reserve included), within ``CASH_TOLERANCE``.
- **Orders on their way.** The books are read twice, before and after the broker is asked:
  an entity with an order not yet final (``PENDING_STATUSES``) at either read, or whose
  units moved between the reads (a fill booked meanwhile), is skipped in this run; the cash
  likewise while any order of the pool is not final or the cash moved. Nothing is guessed:
  the next run compares them again.
- **The broker does not answer** (``BrokerUnavailable``): nothing is recorded and the
  exception goes to the caller (the command exits with an error, the task reports it).

Queries: the books twice (the open commitments' units, the orders not final, the pool's
cash: three each), then one transaction: the pool row locked (runs of one pool never
interleave), the open events, the acknowledged ones when a new difference needs them, and
one write per kind of change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Sum

from execution.adapters import BrokerUnavailable, ExecutionAdapter
from execution.models import PENDING_STATUSES, Order
from portfolio.models import (
    AdapterKind,
    Commitment,
    CommitmentStatus,
    Pool,
    ReconciliationEvent,
    ReconciliationStatus,
)
from portfolio.reconciliation_rules import (
    Difference,
    Subject,
    compare_books_with_broker,
    is_known_difference,
)

logger = logging.getLogger(__name__)

#: Cash within this many dollars of the broker's agrees: the broker may keep cents where the
#: books keep four decimal places.
CASH_TOLERANCE = Decimal("0.01")

__all__ = [
    "CASH_TOLERANCE",
    "BrokerUnavailable",
    "ReconciliationResult",
    "account_pool_ids",
    "describe",
    "plain_number",
    "reconcile_positions",
]


@dataclass(frozen=True)
class ReconciliationResult:
    """What one run found and recorded.

    ``compared`` is False when the pool was not reconciled (``detail`` says why).
    ``differences`` everything that differed; ``opened`` the ids of the events this run
    opened, ``seen_again`` those of open events it found again, ``agreed`` those of open events
    whose difference is gone (they stay open for the operator), ``known`` the differences equal
    to one an operator already acknowledged (no new event). ``skipped`` the entities left out
    (an order on its way); ``cash_detail`` why the cash was or was not compared.
    """

    pool: str
    now: datetime
    compared: bool
    detail: str = ""
    differences: tuple[Difference, ...] = ()
    opened: tuple[int, ...] = ()
    seen_again: tuple[int, ...] = ()
    agreed: tuple[int, ...] = ()
    known: tuple[Difference, ...] = ()
    skipped: tuple[str, ...] = ()
    cash_compared: bool = False
    cash_detail: str = ""
    events: dict[tuple[str, str], int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-ready (``manage.py reconcile_positions --json``): numbers as text."""

        def difference(d: Difference) -> dict:
            return {
                "subject": str(d.subject),
                "symbol": d.symbol,
                "books": plain_number(d.books),
                "broker": plain_number(d.broker),
                "event": self.events.get(d.key),
            }

        return {
            "pool": self.pool,
            "now": self.now.isoformat(),
            "compared": self.compared,
            "detail": self.detail,
            "differences": [difference(d) for d in self.differences],
            "opened": list(self.opened),
            "seen_again": list(self.seen_again),
            "agreed": list(self.agreed),
            "known": [difference(d) for d in self.known],
            "skipped": list(self.skipped),
            "cash_compared": self.cash_compared,
            "cash_detail": self.cash_detail,
        }


@dataclass(frozen=True)
class _Books:
    """The books as one read saw them: units by entity over the account's pools, the
    entities with an order not final, whether this pool has one, and its cash."""

    units: dict[str, Decimal]
    pending: frozenset[str]
    pool_pending: bool
    cash: Decimal | None


def account_pool_ids(pool: Pool) -> list[int]:
    """The pools whose commitments the broker's account holds: every pool on the HTTP adapter
    (one execution API account) for a pool on it, else (a paper pool compared with an adapter
    given explicitly) the pool alone. One query for an HTTP pool, none otherwise."""
    if pool.adapter == AdapterKind.HTTP:
        return list(
            Pool.objects.filter(adapter=AdapterKind.HTTP)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    return [pool.pk]


def _read_books(pool: Pool, pool_ids: list[int], with_cash: bool) -> _Books:
    """Three queries (two without the cash)."""
    units = {
        row["entity_id"]: row["total"]
        for row in Commitment.objects.filter(pool_id__in=pool_ids, status=CommitmentStatus.OPEN)
        .values("entity_id")
        .annotate(total=Sum("units"))
        .order_by("entity_id")
    }
    pending_rows = set(
        Order.objects.filter(pool_id__in=pool_ids, status__in=PENDING_STATUSES)
        .values_list("pool_id", "entity_id")
        .distinct()
    )
    cash = (
        Pool.objects.filter(pk=pool.pk).values_list("cash", flat=True).first()
        if with_cash
        else None
    )
    return _Books(
        units=units,
        pending=frozenset(symbol for _, symbol in pending_rows),
        pool_pending=any(pool_id == pool.pk for pool_id, _ in pending_rows),
        cash=cash,
    )


def _moved(before: _Books, after: _Books) -> set[str]:
    symbols = before.units.keys() | after.units.keys()
    return {s for s in symbols if before.units.get(s, 0) != after.units.get(s, 0)}


def reconcile_positions(
    pool: Pool, now: datetime, adapter: ExecutionAdapter | None = None
) -> ReconciliationResult:
    """Compare the books of ``pool`` with its broker as of ``now`` and record the differences;
    see the module docstring. Call it outside any transaction: the broker is asked between
    two reads of the books, and the events are written in one transaction afterwards.

    Raises ``BrokerUnavailable`` (logged, nothing recorded) when the broker gives no usable
    answer, and ``RuntimeError`` when the pool's adapter is not configured.
    """
    if adapter is None and pool.adapter != AdapterKind.HTTP:
        return ReconciliationResult(
            pool.name,
            now,
            compared=False,
            detail="not reconciled: the paper broker keeps no account of its own (its "
            "positions are the books)",
        )
    if adapter is None:
        from execution.worker import build_adapter

        adapter = build_adapter(pool, now)
    pool_ids = account_pool_ids(pool)
    cash_rule = pool.adapter == AdapterKind.HTTP and pool_ids == [pool.pk]
    before = _read_books(pool, pool_ids, cash_rule)
    try:
        positions = adapter.positions()
        account = adapter.account() if cash_rule else None
    except BrokerUnavailable as exc:
        logger.warning("pool %s: reconciliation: broker unavailable (%s)", pool.name, exc)
        raise
    after = _read_books(pool, pool_ids, cash_rule)

    skip = before.pending | after.pending | _moved(before, after)
    if not cash_rule:
        cash_detail = (
            "not compared: other pools share the broker account"
            if pool.adapter == AdapterKind.HTTP
            else "not compared: the pool is not on the HTTP execution API"
        )
    elif before.pool_pending or after.pool_pending:
        cash_detail = "not compared: an order of the pool is not final yet"
    elif before.cash != after.cash:
        cash_detail = "not compared: the cash moved while the broker was read"
    else:
        cash_detail = ""
    compare_cash = cash_rule and not cash_detail
    comparison = compare_books_with_broker(
        after.units,
        [(p.symbol, p.quantity) for p in positions],
        books_cash=after.cash if compare_cash else None,
        broker_cash=account.cash if compare_cash and account is not None else None,
        cash_tolerance=CASH_TOLERANCE,
        skip_symbols=skip,
    )
    if compare_cash:
        cash_detail = "compared"
    recorded = _record(pool, now, comparison.differences, comparison.agreed)
    result = ReconciliationResult(
        pool=pool.name,
        now=now,
        compared=True,
        detail=_summary(recorded, comparison.differences),
        differences=comparison.differences,
        opened=recorded.opened,
        seen_again=recorded.seen_again,
        agreed=recorded.agreed,
        known=recorded.known,
        skipped=tuple(sorted(comparison.skipped)),
        cash_compared=comparison.cash_compared,
        cash_detail=cash_detail,
        events=recorded.events,
    )
    logger.info("pool %s: reconciliation: %s", pool.name, result.detail)
    return result


@dataclass(frozen=True)
class _Recorded:
    opened: tuple[int, ...]
    seen_again: tuple[int, ...]
    agreed: tuple[int, ...]
    known: tuple[Difference, ...]
    events: dict[tuple[str, str], int]


def _acknowledged_deltas(
    pool: Pool, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Decimal]:
    """The broker's value less the books' of the last acknowledged event of each key. One
    query (none without keys)."""
    keys = set(keys)
    if not keys:
        return {}
    rows = (
        ReconciliationEvent.objects.filter(
            pool=pool,
            status=ReconciliationStatus.ACKNOWLEDGED,
            subject__in={subject for subject, _ in keys},
            symbol__in={symbol for _, symbol in keys},
        )
        .order_by("subject", "symbol", "-acknowledged_at", "-id")
        .values_list("subject", "symbol", "books_value", "broker_value")
    )
    deltas: dict[tuple[str, str], Decimal] = {}
    for subject, symbol, books, broker in rows:
        deltas.setdefault((subject, symbol), broker - books)
    return deltas


def _record(
    pool: Pool,
    now: datetime,
    differences: tuple[Difference, ...],
    agreed: frozenset[tuple[str, str]],
) -> _Recorded:
    """Open, update or mark agreed the pool's events, in one transaction."""
    with transaction.atomic():
        list(Pool.objects.select_for_update().filter(pk=pool.pk).values_list("pk", flat=True))
        open_events = {
            (event.subject, event.symbol): event
            for event in ReconciliationEvent.objects.select_for_update().filter(
                pool=pool, status=ReconciliationStatus.OPEN
            )
        }
        fresh = [d for d in differences if d.key not in open_events]
        acknowledged = _acknowledged_deltas(pool, (d.key for d in fresh))
        known = tuple(d for d in fresh if is_known_difference(d, acknowledged.get(d.key)))
        new_events = [
            ReconciliationEvent(
                pool=pool,
                subject=str(d.subject),
                symbol=d.symbol,
                books_value=d.books,
                broker_value=d.broker,
                first_seen_at=now,
                last_seen_at=now,
            )
            for d in fresh
            if d not in known
        ]
        ReconciliationEvent.objects.bulk_create(new_events)
        seen = []
        for d in differences:
            event = open_events.get(d.key)
            if event is None:
                continue
            event.books_value, event.broker_value = d.books, d.broker
            event.last_seen_at = max(now, event.first_seen_at)
            event.seen_count += 1
            event.agreed_at = None
            seen.append(event)
        if seen:
            ReconciliationEvent.objects.bulk_update(
                seen, ["books_value", "broker_value", "last_seen_at", "seen_count", "agreed_at"]
            )
        gone = [
            event for key, event in open_events.items() if key in agreed and event.agreed_at is None
        ]
        for event in gone:
            event.agreed_at = now
        if gone:
            ReconciliationEvent.objects.bulk_update(gone, ["agreed_at"])
    for event in new_events:
        what = f"{event.symbol} units" if event.symbol else "cash"
        logger.warning(
            "pool %s: reconciliation: %s differ (books %s, broker %s): event %s opened%s",
            pool.name,
            what,
            event.books_value,
            event.broker_value,
            event.pk,
            ", entity held reduce-only" if event.symbol else "",
        )
    events = {key: event.pk for key, event in open_events.items()}
    events.update({(e.subject, e.symbol): e.pk for e in new_events})
    return _Recorded(
        opened=tuple(e.pk for e in new_events),
        seen_again=tuple(e.pk for e in seen),
        agreed=tuple(e.pk for e in gone),
        known=known,
        events=events,
    )


def _summary(recorded: _Recorded, differences: tuple[Difference, ...]) -> str:
    if not differences:
        return "books and broker agree"
    parts = [f"{len(differences)} difference(s)"]
    if recorded.opened:
        parts.append(f"{len(recorded.opened)} event(s) opened")
    if recorded.seen_again:
        parts.append(f"{len(recorded.seen_again)} open event(s) seen again")
    if recorded.known:
        parts.append(f"{len(recorded.known)} already acknowledged")
    return ", ".join(parts)


def describe(difference: Difference) -> str:
    """One line for a difference: ``AAPL units: books 10, broker 12`` or ``cash: books …``."""
    what = f"{difference.symbol} units" if difference.subject == Subject.UNITS else "cash"
    books, broker = plain_number(difference.books), plain_number(difference.broker)
    return f"{what}: books {books}, broker {broker}"


def plain_number(value: Decimal) -> str:
    """A number without the zeros a database column pads it with: 10.0000 → 10."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
