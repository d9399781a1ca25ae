"""Replay: every loop of the engine re-run over a past window in a throwaway pool, set beside
what really happened (``manage.py replay``; docs/decisions.md, "Replay").

``replay_pool(name, first_day, last_day, overrides)``:

1. reads what the real pool did in the window (decisions, orders, fills, breakers, tier
   changes: ``summarize_run``) and the moments its loops ran at (``replay_moments``: every time
   its records carry, and the engine pass cadence of each session);
2. in one transaction it then rolls back, creates a paper pool ``replay-<pool>-<random>`` with
   ``portfolio.actions.create_pool``, gives it the real pool's state as of the window's start
   (``starting_state``: cash, reserve, tier, halt, open commitments, breakers in force, the
   snapshot and closed-commitment history the metrics read, the decisions that keep earlier
   recommendations processed) and its settings, applies the changed settings through the
   audited actions (``portfolio.config_overrides.apply_overrides``), runs
   ``decisions.engine.run_engine_pass`` at every moment (risk threshold monitor, performance
   loop, decision cycle, the paper broker, tier scheduler, rebalancer) and summarizes its
   records like the real pool's;
3. compares the two in memory: counts side by side and the recommendations whose outcome
   differs, each with the step of its trace that decided it (``deciding_step``).

Nothing the replay writes survives it: the transaction is rolled back after the summary is
read, so the real pool, its orders, every stored row and the cache are as they were (the
orders' hand-off and the dedupe keys run on commit only, and the dedupe cache is not read).
No look-ahead: every read of the engine is as of the moment's ``now`` (the read model's bars,
fills and breakers; ``generated_at`` of the candidates), and on a wall clock a recommendation
counts only from its ``received_at`` (``known_recommendations``).
"""

from __future__ import annotations

import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.test.utils import override_settings
from django.utils import timezone

from decisions.engine import run_engine_pass
from decisions.loops import HISTORY_SESSIONS
from decisions.models import DecisionRecord, Recommendation
from execution.models import Order
from portfolio.actions import create_pool
from portfolio.config import ENGINE_CONFIG_FIELDS, POOL_RISK_FIELDS
from portfolio.config_overrides import ConfigOverrides, apply_overrides
from portfolio.market_calendar import MarketCalendar, get_market_calendar
from portfolio.metrics import peak_to_trough
from portfolio.models import (
    CircuitBreakerEvent,
    Commitment,
    CommitmentStatus,
    EngineConfig,
    Fill,
    MarketSnapshot,
    OperatorAction,
    OperatorActionKind,
    Pool,
    PoolRiskConfig,
    PoolSnapshot,
    ReserveLedgerEntry,
    RiskTierHistory,
    TierTrigger,
)
from portfolio.selectors import get_engine_config, get_pool_risk_config

__all__ = [
    "Difference",
    "RecommendationOutcome",
    "ReplayError",
    "ReplayResult",
    "RunSummary",
    "StartingState",
    "deciding_step",
    "known_recommendations",
    "replay_moments",
    "replay_pool",
    "starting_state",
    "summarize_run",
]

NEW_YORK = ZoneInfo("America/New_York")
ZERO = Decimal("0")
CENT = Decimal("0.01")
AVERAGE_QUANTUM = Decimal("0.0001")
#: The engine pass cadence of a session (the demo's pass times,
#: ``decisions/tooling/demo.py``): 30 minutes before the open, 15 minutes after it, then every
#: ``every`` minutes, and the close.
PRE_OPEN = timedelta(minutes=30)
FIRST_PASS = timedelta(minutes=15)
DEFAULT_EVERY_MINUTES = 30
#: How many differing recommendations a result lists (``differences`` counts them all).
LISTED_DIFFERENCES = 20
#: A replay with no changed setting.
NO_CHANGE = ConfigOverrides()
#: Who the replay's own audit rows name (they are rolled back with everything else).
REPLAY_ACTOR = "replay"


class ReplayError(Exception):
    """The replay cannot run as asked (unknown pool, empty window, a setting it refuses);
    nothing was written."""


class _RolledBack(Exception):
    """Raised inside the replay's transaction to roll it back, carrying what was read."""

    def __init__(self, payload: Any) -> None:
        super().__init__("replay rolled back")
        self.payload = payload


# --- the window and its moments ---------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The replayed days, New York dates, both included: ``start`` is midnight (New York) of
    the first, ``end`` midnight after the last."""

    first_day: date
    last_day: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, datetime.min.time(), tzinfo=NEW_YORK)

    @property
    def end(self) -> datetime:
        return datetime.combine(
            self.last_day + timedelta(days=1), datetime.min.time(), tzinfo=NEW_YORK
        )

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def session_moments(calendar: MarketCalendar, day: date, every: timedelta) -> list[datetime]:
    """The engine passes of one session: 30 minutes before the open (where entries are turned
    away), 15 minutes after it (the weekly rebalancer's time), then every ``every`` until the
    close, and the close (the day's snapshot and the risk tier scheduler). An early close has
    fewer."""
    opens, closes = calendar.session_open(day), calendar.session_close(day)
    moments = [opens - PRE_OPEN]
    at = opens + FIRST_PASS
    while at < closes:
        moments.append(at)
        at += every
    moments.append(closes)
    return moments


def recorded_moments(pool: Pool, window: Window) -> set[datetime]:
    """Every time the pool's records carry within the window, on the engine's clock: first and
    last evaluations of its decisions, its orders, fills, snapshots, breakers, automatic tier
    changes and reserve movements. Seven queries."""
    span = {"gte": window.start, "lt": window.end}

    def times(queryset: QuerySet, name: str) -> list[datetime]:
        return list(
            queryset.filter(**{f"{name}__{op}": v for op, v in span.items()}).values_list(
                name, flat=True
            )
        )

    decisions = DecisionRecord.objects.filter(pool=pool)
    found = set(times(decisions, "evaluated_at")) | set(times(decisions, "last_evaluated_at"))
    found |= set(times(Order.objects.filter(pool=pool), "created_at"))
    found |= set(times(Fill.objects.filter(pool=pool), "booked_at"))
    found |= set(times(PoolSnapshot.objects.filter(pool=pool), "taken_at"))
    found |= set(times(CircuitBreakerEvent.objects.filter(pool=pool), "triggered_at"))
    found |= set(
        times(RiskTierHistory.objects.filter(pool=pool, trigger=TierTrigger.AUTO), "changed_at")
    )
    found |= set(times(ReserveLedgerEntry.objects.filter(pool=pool), "created_at"))
    return found


def replay_moments(
    pool: Pool, window: Window, every_minutes: int = DEFAULT_EVERY_MINUTES
) -> tuple[list[datetime], int]:
    """The moments to run the engine at, in order, and how many of them the real pool's records
    carry: every recorded time (``recorded_moments``) and, for each session of the window, the
    engine pass cadence (``session_moments``) every ``every_minutes`` minutes; with 0, only the
    recorded times and, in a session with any, the first pass after the open (the rebalancer's)
    and the close (the tier scheduler's)."""
    calendar = get_market_calendar(window.start)
    recorded = recorded_moments(pool, window)
    active = {moment.astimezone(NEW_YORK).date() for moment in recorded}
    scheduled: set[datetime] = set()
    for day in calendar.sessions_between(window.first_day, window.last_day):
        if every_minutes > 0:
            scheduled.update(session_moments(calendar, day, timedelta(minutes=every_minutes)))
        elif day in active:
            opens = calendar.session_open(day)
            scheduled.update({opens + FIRST_PASS, calendar.session_close(day)})
    moments = sorted(m for m in recorded | scheduled if m in window)
    return moments, len(recorded)


# --- what was known ---------------------------------------------------------------------------


def simulated_clock(pool: Pool) -> bool:
    """Whether the pool ran on a simulated clock: one of its decisions was made before its
    recommendation was received (the demo and a replay of imported history load every
    recommendation first, then run the engine on earlier times). On a wall clock that cannot
    happen: a cycle sees only the rows stored when it runs. One query."""
    return DecisionRecord.objects.filter(
        pool=pool, evaluated_at__lt=F("recommendation__received_at")
    ).exists()


def known_recommendations(now: datetime) -> QuerySet[Recommendation]:
    """The recommendations stored by ``now`` on a wall clock (``received_at`` ≤ ``now``): a
    recommendation generated before a moment but received after it was not there to be seen.
    The engine filters on ``generated_at`` only, so the replay passes this to it."""
    return Recommendation.objects.filter(received_at__lte=now)


# --- the starting state -----------------------------------------------------------------------


@dataclass(frozen=True)
class StartingState:
    """The real pool as of the window's start, as the replay pool receives it.

    ``cash`` and ``reserve_balance`` in dollars (the starting cash and every fill since; the
    reserve ledger's running balance); ``tier`` and ``halted`` from the tier history and the
    operator's halts; ``positions`` the commitments open at the start ({symbol: (units, entry
    value)}); ``rows`` the model instances to copy (open and recently closed commitments,
    breakers in force, the snapshots the metrics read, decisions on recommendations still
    fresh), not saved, their ``pool`` unset. ``notes``: where the state is an approximation.
    """

    cash: Decimal
    reserve_balance: Decimal
    tier: str
    halted: bool
    halt_reason: str
    positions: dict[str, tuple[Decimal, Decimal]]
    rows: dict[str, list] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _tier_at(pool: Pool, moment: datetime) -> str:
    """The pool's tier at ``moment`` from its tier history: the last change before it, else
    the tier the first change after it left (the "pool created" row may carry the operator's
    clock, after simulated sessions)."""
    history = list(
        RiskTierHistory.objects.filter(pool=pool)
        .order_by("changed_at", "id")
        .values_list("changed_at", "previous_tier", "new_tier")
    )
    before = [new for at, _, new in history if at <= moment]
    if before:
        return before[-1]
    after = [(previous or new) for at, previous, new in history if at > moment]
    return after[0] if after else pool.risk_tier


def _halt_at(pool: Pool, moment: datetime) -> tuple[bool, str]:
    actions = list(
        OperatorAction.objects.filter(
            pool=pool, action__in=(OperatorActionKind.HALT, OperatorActionKind.RESUME)
        )
        .order_by("created_at", "id")
        .values_list("created_at", "before", "after")
    )
    before = [after for at, _, after in actions if at <= moment]
    if before:
        return bool(before[-1].get("halted")), before[-1].get("halt_reason", "")
    later = [prior for at, prior, _ in actions if at > moment]
    if later:
        return bool(later[0].get("halted")), later[0].get("halt_reason", "")
    return pool.halted, pool.halt_reason


def _booked(cash: Decimal, side: str, units: Decimal, value: Decimal) -> Decimal:
    """Cash after one fill, rounded to the four decimal places the column keeps (each fill's
    save of the books rounds it)."""
    moved = cash - units * value if side == "buy" else cash + units * value
    return moved.quantize(AVERAGE_QUANTUM)


def _cash_at(pool: Pool, moment: datetime) -> Decimal:
    """The pool's cash at ``moment``: the cash it was created with (its ``create_pool`` audit
    row) and every fill booked by then, in order; without that row, today's cash less every
    fill booked after the moment. Two queries."""
    created = (
        OperatorAction.objects.filter(pool=pool, action=OperatorActionKind.CREATE_POOL)
        .values_list("after", flat=True)
        .first()
    )
    if created and "cash" in created:
        cash = Decimal(str(created["cash"]))
        for side, units, value in (
            Fill.objects.filter(pool=pool, booked_at__lte=moment)
            .order_by("booked_at", "id")
            .values_list("side", "units", "value")
        ):
            cash = _booked(cash, side, units, value)
        return cash
    cash = pool.cash
    for side, units, value in (
        Fill.objects.filter(pool=pool, booked_at__gt=moment)
        .order_by("-booked_at", "-id")
        .values_list("side", "units", "value")
    ):
        cash = _booked(cash, "sell" if side == "buy" else "buy", units, value)
    return cash


def _reserve_at(pool: Pool, moment: datetime) -> Decimal:
    """The reserve at ``moment`` from the ledger's running balance. Two queries at most."""
    ledger = ReserveLedgerEntry.objects.filter(pool=pool)
    last = (
        ledger.filter(created_at__lte=moment)
        .order_by("-created_at", "-id")
        .values_list("balance_after", flat=True)
        .first()
    )
    if last is not None:
        return last
    first_after = (
        ledger.filter(created_at__gt=moment)
        .order_by("created_at", "id")
        .values_list("balance_after", "amount")
        .first()
    )
    return first_after[0] - first_after[1] if first_after else pool.reserve_balance


def starting_state(
    pool: Pool, window: Window, *, max_age_minutes: int, lookback_days: int
) -> StartingState:
    """The real pool as of ``window.start`` (see ``StartingState``). ``max_age_minutes`` and
    ``lookback_days``: the longest recommendation age and success-rate lookback of the real
    and the changed settings, which bound the decisions and closed commitments copied."""
    start = window.start
    cash = _cash_at(pool, start)
    reserve = _reserve_at(pool, start)
    halted, halt_reason = _halt_at(pool, start)
    notes: list[str] = []

    open_then = list(
        Commitment.objects.filter(pool=pool, opened_at__lte=start).exclude(closed_at__lte=start)
    )
    fills_by_commitment: dict[int, list[tuple[str, Decimal, Decimal]]] = defaultdict(list)
    for commitment_id, side, units, value in (
        Fill.objects.filter(commitment__in=open_then, booked_at__lte=start)
        .order_by("booked_at", "id")
        .values_list("commitment_id", "side", "units", "value")
    ):
        fills_by_commitment[commitment_id].append((side, units, value))
    positions: dict[str, tuple[Decimal, Decimal]] = {}
    commitments = []
    for commitment in open_then:
        units, entry = _position_from_fills(fills_by_commitment.get(commitment.pk, []))
        if not fills_by_commitment.get(commitment.pk):
            units, entry = commitment.units, commitment.entry_value
        if units <= 0:
            continue
        positions[commitment.entity_id] = (units, entry)
        commitments.append(
            _copy(
                commitment,
                status=CommitmentStatus.OPEN,
                units=units,
                entry_value=entry,
                entry_cost=units * entry,
                closed_at=None,
                exit_value=None,
                realized_gain=ZERO,
                close_reason="",
                siphoned=False,
            )
        )
    if commitments:
        notes.append(
            f"{len(commitments)} commitment(s) open at the start keep their latest risk "
            "threshold, gain target and trailing state (their state at the start is not "
            "recorded): their exits may differ from reality's"
        )
    closed = [
        _copy(c, siphoned=True)
        for c in Commitment.objects.filter(
            pool=pool,
            status=CommitmentStatus.CLOSED,
            closed_at__lte=start,
            closed_at__gt=start - timedelta(days=lookback_days),
        )
    ]
    breakers = [
        _copy(event, cleared_at=None, cleared_by="", clear_reason="")
        for event in CircuitBreakerEvent.objects.filter(
            pool=pool, triggered_at__lte=start, expires_at__gt=start
        ).exclude(cleared_at__lte=start)
    ]
    snapshots = [
        _copy(snapshot)
        for snapshot in PoolSnapshot.objects.filter(
            pool=pool, session__lt=window.first_day
        ).order_by("-session")[:HISTORY_SESSIONS]
    ]
    decisions = [
        _copy(record)
        for record in DecisionRecord.objects.filter(
            pool=pool,
            evaluated_at__lt=start,
            recommendation__generated_at__gt=start - timedelta(minutes=max_age_minutes),
        )
    ]
    return StartingState(
        cash=cash,
        reserve_balance=reserve,
        tier=_tier_at(pool, start),
        halted=halted,
        halt_reason=halt_reason,
        positions=positions,
        rows={
            "commitments": commitments + closed,
            "breakers": breakers,
            "snapshots": snapshots,
            "decisions": decisions,
        },
        notes=tuple(notes),
    )


def _position_from_fills(fills: Iterable[tuple[str, Decimal, Decimal]]) -> tuple[Decimal, Decimal]:
    """Units held and their average entry value after ``fills`` (side, units, value), averaged
    as the books average an add."""
    units, entry = ZERO, ZERO
    for side, quantity, value in fills:
        if side == "buy":
            total = units + quantity
            entry = ((units * entry + quantity * value) / total).quantize(AVERAGE_QUANTUM)
            units = total
        else:
            units -= quantity
    return units, entry


def _copy(instance, **changes):
    """An unsaved copy of a model instance without its primary key and pool, ``changes``
    applied."""
    values = {
        f.attname: getattr(instance, f.attname)
        for f in instance._meta.concrete_fields
        if not f.primary_key and f.name != "pool"
    }
    return type(instance)(**(values | changes))


def _install(pool: Pool, state: StartingState) -> None:
    """Give the replay pool the starting state (bulk inserts, inside the replay's
    transaction)."""
    for rows in state.rows.values():
        for row in rows:
            row.pool = pool
    Commitment.objects.bulk_create(state.rows["commitments"])
    CircuitBreakerEvent.objects.bulk_create(state.rows["breakers"])
    PoolSnapshot.objects.bulk_create(state.rows["snapshots"])
    DecisionRecord.objects.bulk_create(state.rows["decisions"])
    Pool.objects.filter(pk=pool.pk).update(
        reserve_balance=state.reserve_balance,
        halted=state.halted,
        halt_reason=state.halt_reason,
    )


def _copy_settings(source: Pool, target: Pool) -> None:
    """The real pool's engine settings and execution limits onto the replay pool. The market
    data fallback is off: the replay reads the values reality stored, never today's."""
    config = get_engine_config(source)
    values = {name: getattr(config, name) for name in ENGINE_CONFIG_FIELDS}
    values["market_data_fallback"] = False
    EngineConfig.objects.filter(pool=target).update(**values)
    limits = get_pool_risk_config(source)
    PoolRiskConfig.objects.filter(pool=target).update(
        **{name: getattr(limits, name) for name in POOL_RISK_FIELDS}
    )


# --- summaries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecommendationOutcome:
    """How one recommendation ended in a run: its processed decision, else its latest skip."""

    recommendation: str
    entity: str
    outcome: str
    skip_reason: str
    units: Decimal | None
    evaluated_at: datetime
    deciding_step: str

    @property
    def key(self) -> tuple[str, str]:
        return self.outcome, self.skip_reason

    @property
    def label(self) -> str:
        return f"{self.outcome} ({self.skip_reason})" if self.skip_reason else self.outcome

    def as_json(self) -> dict:
        return {
            "outcome": self.outcome,
            "skip_reason": self.skip_reason,
            "units": _number(self.units),
            "evaluated_at": self.evaluated_at.isoformat(),
            "deciding_step": self.deciding_step,
        }


@dataclass(frozen=True)
class RunSummary:
    """One run over the window (reality's or the replay's), read from its records.

    Counts by outcome, skip reason, order side/reason and status, breaker type; dollars for
    the results (``realized_gain`` of the fills in the window, ``unrealized_gain`` of the
    commitments held at the end at the last value known then); ``worst_decline`` the maximum
    drawdown of ``equity`` (fraction, 0.08 = 8 %), the pool's value at every moment.
    ``decision_rows`` and ``order_rows`` list every decision and order in the window (sorted by
    time, then recommendation or entity, side and reason), for an exact comparison."""

    pool: str
    decisions: dict[str, int]
    skip_reasons: dict[str, int]
    orders: dict[str, int]
    order_statuses: dict[str, int]
    fills: int
    realized_gain: Decimal
    unrealized_gain: Decimal
    start_value: Decimal
    end_value: Decimal
    worst_decline: Decimal
    breakers: dict[str, int]
    tier_changes: tuple[str, ...]
    equity: tuple[tuple[datetime, Decimal], ...]
    outcomes: dict[str, RecommendationOutcome]
    decision_rows: tuple[tuple, ...]
    order_rows: tuple[tuple, ...]

    def as_json(self) -> dict:
        return {
            "pool": self.pool,
            "decisions": dict(sorted(self.decisions.items())),
            "skip_reasons": dict(sorted(self.skip_reasons.items())),
            "orders": dict(sorted(self.orders.items())),
            "order_statuses": dict(sorted(self.order_statuses.items())),
            "fills": self.fills,
            "realized_gain": _number(self.realized_gain, CENT),
            "unrealized_gain": _number(self.unrealized_gain, CENT),
            "start_value": _number(self.start_value, CENT),
            "end_value": _number(self.end_value, CENT),
            "worst_decline": _number(self.worst_decline, Decimal("0.000001")),
            "breakers": dict(sorted(self.breakers.items())),
            "tier_changes": list(self.tier_changes),
        }


def deciding_step(trace: dict) -> str:
    """The step of a decision trace that decided it: the first check that failed, else the
    sizer's rejection, else the size or the exit."""
    for check in trace.get("checks") or ():
        if not check.get("passed"):
            return f"{check.get('check')}: {check.get('detail') or check.get('reason')}"
    sizing = trace.get("sizing")
    if sizing:
        if sizing.get("rejected"):
            steps = sizing.get("waterfall") or ()
            note = steps[-1].get("note") if steps else ""
            return f"sizing: {sizing.get('reason')}" + (f" ({note})" if note else "")
        return f"sizing: {sizing.get('units')} units, ${sizing.get('dollar_amount')}"
    if trace.get("exit_units"):
        return f"exit: {trace['exit_units']} units"
    return str(trace.get("outcome", ""))


def _final_outcomes(records: Sequence[dict]) -> dict[str, RecommendationOutcome]:
    """Each recommendation's processed decision, else its skip first made last."""
    chosen: dict[str, dict] = {}
    for record in records:
        current = chosen.get(record["recommendation_id"])
        if current is None or (
            not current["processed"]
            and (
                record["processed"]
                or (record["evaluated_at"], record["id"]) > (current["evaluated_at"], current["id"])
            )
        ):
            chosen[record["recommendation_id"]] = record
    return {
        rec: RecommendationOutcome(
            recommendation=rec,
            entity=r["entity_id"],
            outcome=r["outcome"],
            skip_reason=r["skip_reason"],
            units=r["units"],
            evaluated_at=r["evaluated_at"],
            deciding_step=deciding_step(r["decision_trace"] or {}),
        )
        for rec, r in chosen.items()
    }


def summarize_run(
    pool: Pool, window: Window, moments: Sequence[datetime], state: StartingState
) -> RunSummary:
    """What ``pool`` did in the window, from its records (a fixed handful of queries)."""
    start, end = window.start, window.end
    records = list(
        DecisionRecord.objects.filter(pool=pool, evaluated_at__gte=start, evaluated_at__lt=end)
        .order_by("evaluated_at", "id")
        .values(
            "id",
            "recommendation_id",
            "entity_id",
            "outcome",
            "skip_reason",
            "processed",
            "units",
            "commitment_value",
            "evaluated_at",
            "last_evaluated_at",
            "evaluations",
            "decision_trace",
        )
    )
    orders = list(
        Order.objects.filter(pool=pool, created_at__gte=start, created_at__lt=end)
        .order_by("created_at", "id")
        .values_list(
            "created_at", "entity_id", "side", "reason", "quantity", "status", "fill_value"
        )
    )
    fills = list(
        Fill.objects.filter(pool=pool, booked_at__gte=start, booked_at__lt=end)
        .order_by("booked_at", "id")
        .values_list("booked_at", "entity_id", "side", "units", "value", "realized_gain")
    )
    breakers = Counter(
        CircuitBreakerEvent.objects.filter(
            pool=pool, triggered_at__gte=start, triggered_at__lt=end
        ).values_list("trigger_type", flat=True)
    )
    tier_changes = tuple(
        f"{at.astimezone(NEW_YORK):%Y-%m-%d %H:%M} {previous} → {new}"
        for at, previous, new in RiskTierHistory.objects.filter(
            pool=pool, trigger=TierTrigger.AUTO, changed_at__gte=start, changed_at__lt=end
        )
        .order_by("changed_at", "id")
        .values_list("changed_at", "previous_tier", "new_tier")
    )
    equity, unrealized = _equity_curve(state, fills, moments, window)
    values = [value for _, value in equity]
    return RunSummary(
        pool=pool.name,
        decisions=dict(Counter(r["outcome"] for r in records)),
        skip_reasons=dict(Counter(r["skip_reason"] for r in records if r["skip_reason"])),
        orders=dict(Counter(f"{side} {reason}" for _, _, side, reason, *_ in orders)),
        order_statuses=dict(Counter(status for *_, status, _ in orders)),
        fills=len(fills),
        realized_gain=sum((gain or ZERO for *_, gain in fills), ZERO),
        unrealized_gain=unrealized,
        start_value=values[0] if values else state.cash,
        end_value=values[-1] if values else state.cash,
        worst_decline=peak_to_trough(values) if values and min(values) > 0 else ZERO,
        breakers=dict(breakers),
        tier_changes=tier_changes,
        equity=tuple(equity),
        outcomes=_final_outcomes(records),
        # In a canonical order: rows made at one moment have no order of their own (the
        # engine's reads of commitments opened together do not order them).
        decision_rows=tuple(
            sorted(
                [
                    (
                        r["evaluated_at"],
                        r["recommendation_id"],
                        r["outcome"],
                        r["skip_reason"],
                        r["processed"],
                        r["units"],
                        r["commitment_value"],
                        r["last_evaluated_at"],
                        r["evaluations"],
                    )
                    for r in records
                ],
                key=lambda row: row[:4],
            )
        ),
        order_rows=tuple(sorted(orders, key=lambda o: o[:5])),
    )


def _equity_curve(
    state: StartingState,
    fills: Sequence[tuple],
    moments: Sequence[datetime],
    window: Window,
) -> tuple[list[tuple[datetime, Decimal]], Decimal]:
    """The pool's value at the start and at every moment (cash plus each commitment at the last
    close known then, its last fill or entry value before any), and the unrealized gain of the
    commitments held at the end. One query (the bars of the entities involved)."""
    symbols = set(state.positions) | {symbol for _, symbol, *_ in fills}
    bars: dict[str, list[tuple[datetime, Decimal]]] = defaultdict(list)
    for symbol, as_of, close in (
        MarketSnapshot.objects.filter(
            entity_id__in=symbols,
            as_of__gt=window.start - timedelta(days=10),
            as_of__lt=window.end,
        )
        .order_by("entity_id", "as_of")
        .values_list("entity_id", "as_of", "close")
    ):
        bars[symbol].append((as_of, close))
    cash = state.cash
    held = {symbol: [units, entry, entry] for symbol, (units, entry) in state.positions.items()}
    position = dict.fromkeys(bars, 0)

    def mark(symbol: str, at: datetime, fallback: Decimal) -> Decimal:
        series = bars.get(symbol, ())
        i = position.get(symbol, 0)
        while i < len(series) and series[i][0] <= at:
            i += 1
        position[symbol] = i
        return series[i - 1][1] if i else fallback

    def value_at(at: datetime) -> Decimal:
        return cash + sum(
            (units * mark(symbol, at, last) for symbol, (units, _, last) in held.items()),
            ZERO,
        )

    curve = [(window.start, value_at(window.start))]
    pending = list(fills)
    for moment in moments:
        while pending and pending[0][0] <= moment:
            _, symbol, side, units, value, _ = pending.pop(0)
            current = held.setdefault(symbol, [ZERO, ZERO, value])
            if side == "buy":
                cash -= units * value
                total = current[0] + units
                current[1] = ((current[0] * current[1] + units * value) / total).quantize(
                    AVERAGE_QUANTUM
                )
                current[0] = total
            else:
                cash += units * value
                current[0] -= units
            current[2] = value
            if current[0] <= 0:
                del held[symbol]
        curve.append((moment, value_at(moment)))
    last = moments[-1] if moments else window.start
    unrealized = sum(
        (
            units * (mark(symbol, last, latest) - entry)
            for symbol, (units, entry, latest) in held.items()
        ),
        ZERO,
    )
    return curve, unrealized


# --- the comparison ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """A recommendation that ended differently (or was evaluated in one run only: None)."""

    recommendation: str
    entity: str
    reality: RecommendationOutcome | None
    replay: RecommendationOutcome | None

    @property
    def at(self) -> datetime:
        return min(o.evaluated_at for o in (self.reality, self.replay) if o is not None)

    def as_json(self) -> dict:
        return {
            "recommendation": self.recommendation,
            "entity": self.entity,
            "reality": self.reality.as_json() if self.reality else None,
            "replay": self.replay.as_json() if self.replay else None,
        }


def compare_outcomes(reality: RunSummary, replay: RunSummary) -> tuple[list[Difference], int]:
    """The recommendations whose outcome differs, earliest first, and how many acts were
    sized differently (same outcome, other units)."""
    differences = []
    resized = 0
    for rec in sorted(set(reality.outcomes) | set(replay.outcomes)):
        real, new = reality.outcomes.get(rec), replay.outcomes.get(rec)
        if real is not None and new is not None and real.key == new.key:
            resized += real.units != new.units
            continue
        entity = (real or new).entity
        differences.append(Difference(rec, entity, real, new))
    differences.sort(key=lambda d: (d.at, d.recommendation))
    return differences, resized


@dataclass(frozen=True)
class ReplayResult:
    """A replay beside reality. ``differences`` counts the recommendations with another
    outcome; ``listed`` holds the first ``LISTED_DIFFERENCES`` of them."""

    pool: str
    replay_pool: str
    window: Window
    settings: tuple[str, ...]
    clock: str
    moments: int
    recorded_moments: int
    reality: RunSummary
    replay: RunSummary
    differences: int
    resized: int
    listed: tuple[Difference, ...]
    elapsed_s: float
    notes: tuple[str, ...]

    def as_json(self) -> dict:
        return {
            "pool": self.pool,
            "replay_pool": self.replay_pool,
            "from": self.window.first_day.isoformat(),
            "to": self.window.last_day.isoformat(),
            "settings": list(self.settings),
            "clock": self.clock,
            "moments": self.moments,
            "recorded_moments": self.recorded_moments,
            "differences": self.differences,
            "resized": self.resized,
            "reality": self.reality.as_json(),
            "replay": self.replay.as_json(),
            "differing": [d.as_json() for d in self.listed],
            "notes": list(self.notes),
            "elapsed_s": round(self.elapsed_s, 3),
        }


def _number(value: Decimal | None, quantum: Decimal | None = None) -> float | None:
    if value is None:
        return None
    return float(value.quantize(quantum) if quantum is not None else value)


# --- the replay -------------------------------------------------------------------------------


def operator_changes_in(pool: Pool, window: Window) -> list[str]:
    """The operator's changes to the pool (and to the shared tier parameters) dated within the
    window: the replay starts from today's settings and does not replay them. One query."""
    rows = (
        OperatorAction.objects.filter(created_at__gte=window.start, created_at__lt=window.end)
        .filter(
            (Q(pool=pool) & ~Q(action=OperatorActionKind.CREATE_POOL))
            | Q(pool=None, action=OperatorActionKind.CHANGE_TIER_CONFIG)
        )
        .values_list("created_at", "action")
    )
    return [f"{at.astimezone(NEW_YORK):%Y-%m-%d %H:%M} {action}" for at, action in sorted(rows)]


def replay_pool(
    pool_name: str,
    first_day: date,
    last_day: date,
    overrides: ConfigOverrides = NO_CHANGE,
    *,
    every_minutes: int = DEFAULT_EVERY_MINUTES,
    clock: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> ReplayResult:
    """Replay the engine on the pool named ``pool_name`` over ``first_day`` … ``last_day`` (New
    York dates, both included) with ``overrides`` changed; see the module docstring. ``clock``:
    ``wall`` (a recommendation counts from its ``received_at``), ``simulated`` (from its
    ``generated_at``: the data was loaded before the engine ran on earlier times) or ``auto``
    (``simulated_clock``). Raises ``ReplayError`` for a bad request, before writing anything."""
    began = time.perf_counter()
    try:
        pool = Pool.objects.get(name=pool_name)
    except Pool.DoesNotExist:
        raise ReplayError(f"no pool named {pool_name!r}") from None
    if first_day > last_day:
        raise ReplayError(f"--from {first_day} is after --to {last_day}")
    today = timezone.now().astimezone(NEW_YORK).date()
    if last_day > today:
        raise ReplayError(f"--to {last_day} is in the future: nothing was recorded after {today}")
    if clock not in ("auto", "wall", "simulated"):
        raise ReplayError(f"unknown clock {clock!r}: auto, wall or simulated")
    if overrides.engine_values().get("market_data_fallback"):
        raise ReplayError(
            "market_data_fallback=true: a replay reads the values reality stored and never "
            "asks the market data API (its answers would be today's, not the moment's)"
        )
    window = Window(first_day, last_day)
    wall = clock == "wall" or (clock == "auto" and not simulated_clock(pool))
    moments, recorded = replay_moments(pool, window, every_minutes)
    if wall:
        # On a wall clock the pool did not run before it existed.
        existed = [m for m in moments if m >= pool.created_at]
        if moments and not existed:
            raise ReplayError(
                f"pool {pool.name} was created on {pool.created_at.astimezone(NEW_YORK):%Y-%m-%d}"
                f", after {last_day}: on a wall clock it has nothing to replay there (--clock "
                "simulated replays data loaded before the engine ran on earlier times)"
            )
        moments = existed
    if not moments:
        raise ReplayError(
            f"no session and no record of pool {pool.name} from {first_day} to {last_day}"
        )
    config = get_engine_config(pool)
    changed = overrides.engine_values()
    state = starting_state(
        pool,
        window,
        max_age_minutes=max(
            config.recommendation_max_age_minutes,
            int(changed.get("recommendation_max_age_minutes", 0)),
        ),
        lookback_days=max(
            config.success_rate_lookback_days, int(changed.get("success_rate_lookback_days", 0))
        ),
    )
    reality = summarize_run(pool, window, moments, state)
    notes = list(state.notes)
    changes = operator_changes_in(pool, window)
    if changes:
        notes.append(
            "operator changes in the window are not replayed (the replay starts from today's "
            "settings): " + "; ".join(changes)
        )
    if progress:
        progress(
            f"Replaying pool {pool.name} from {first_day} to {last_day}: {len(moments)} moments "
            f"({recorded} recorded), {'wall' if wall else 'simulated'} clock"
        )
    name = f"replay-{pool.name[:40]}-{secrets.token_hex(4)}"
    try:
        # Nothing of the replay may reach the cache: no dedupe key is read (a rolled-back
        # pool's id may be reused) and none written (on_commit never runs after a rollback).
        with override_settings(DEDUPE_CACHE=False), transaction.atomic():
            throwaway = create_pool(
                name,
                mode=pool.mode,
                cash=state.cash,
                tier=state.tier,
                adapter="paper",
                actor=REPLAY_ACTOR,
                reason=f"replay of {pool.name} from {first_day} to {last_day}",
                now=window.start,
            )
            _copy_settings(pool, throwaway)
            _install(throwaway, state)
            if overrides:
                apply_overrides(
                    throwaway,
                    overrides,
                    actor=REPLAY_ACTOR,
                    reason="the replay's changed settings",
                    now=window.start,
                    shared_tiers=True,
                )
            for moment in moments:
                run_engine_pass(
                    throwaway.pk,
                    moment,
                    recommendations=known_recommendations(moment) if wall else None,
                )
            raise _RolledBack(summarize_run(throwaway, window, moments, state))
    except _RolledBack as done:
        replayed: RunSummary = done.payload
    differences, resized = compare_outcomes(reality, replayed)
    return ReplayResult(
        pool=pool.name,
        replay_pool=name,
        window=window,
        settings=tuple(overrides.pairs()),
        clock="wall" if wall else "simulated",
        moments=len(moments),
        recorded_moments=recorded,
        reality=reality,
        replay=replayed,
        differences=len(differences),
        resized=resized,
        listed=tuple(differences[:LISTED_DIFFERENCES]),
        elapsed_s=time.perf_counter() - began,
        notes=tuple(notes),
    )
