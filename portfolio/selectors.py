"""The read model: "the pool as of now", one function and frozen named types.

``pool_as_of(pool, now, pending=...)`` is the only place that values a pool. The decision cycle,
the execution gate, the guardian loops, the admin and the API read the pool through it (through
``execution.selectors.pool_as_of``, which adds the orders not yet filled), so a number an
operator reads on a page is the number the engine decided with.

Every read is as of ``now``: no bar, fill or breaker dated later is seen, so simulated time and
replays never look into the future. The queries are a fixed handful whatever the number of
commitments (each loader's docstring counts them).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from zoneinfo import ZoneInfo

import numpy as np
from django.db.models import Sum

from portfolio.indicators import average_true_range
from portfolio.market_calendar import MarketCalendar, get_market_calendar
from portfolio.models import (
    CircuitBreakerEvent,
    Commitment,
    CommitmentStatus,
    EngineConfig,
    Fill,
    MarketSnapshot,
    Pool,
    PoolRiskConfig,
    ReconciliationEvent,
    ReconciliationStatus,
    ReconciliationSubject,
    RiskTierConfig,
)
from portfolio.tiers import TierParams
from portfolio.valuation import (
    PositionView,
    compute_active_pool,
    compute_daily_gain,
    compute_pool_exposure,
    compute_total_value,
    count_declining,
)

NEW_YORK = ZoneInfo("America/New_York")
ZERO = Decimal("0")


# --- configuration ----------------------------------------------------------------------------


def _selected_with(pool: Pool, descriptor):
    """The one-to-one row read with ``pool`` (``select_related``), or None when it was not
    read with it or does not exist."""
    if descriptor.is_cached(pool):
        return descriptor.related.get_cached_value(pool)
    return None


def get_engine_config(pool: Pool) -> EngineConfig:
    """The pool's engine configuration, created with the source's defaults if missing.

    No query when ``pool`` was read with ``select_related("engine_config")``; else one (a
    ``get``; the insert only when the row is missing)."""
    config = _selected_with(pool, Pool.engine_config)
    if config is None:
        config, _ = EngineConfig.objects.get_or_create(pool=pool)
    return config


def get_pool_risk_config(pool: Pool) -> PoolRiskConfig:
    """The execution gate's limits of the pool, created with the defaults if missing.

    No query when ``pool`` was read with ``select_related("risk_config")``; else one (a
    ``get``; the insert only when the row is missing)."""
    config = _selected_with(pool, Pool.risk_config)
    if config is None:
        config, _ = PoolRiskConfig.objects.get_or_create(pool=pool)
    return config


def tier_params(name: str) -> TierParams:
    """The risk tier's parameters as a frozen value. One query."""
    row = RiskTierConfig.objects.get(name=name)
    return TierParams(
        name=row.name,
        min_confidence=row.min_confidence,
        max_position_pct=row.max_position_pct,
        stop_loss_atr_multiplier=row.stop_loss_atr_multiplier,
        reward_risk_ratio=row.reward_risk_ratio,
        max_sector_pct=row.max_sector_pct,
        max_portfolio_heat=row.max_portfolio_heat,
    )


def rule_config(cls, source, *, prefix: str = "", keep_defaults: tuple[str, ...] = ()):
    """A pure rule's frozen configuration built from a configuration row.

    Each field of the dataclass ``cls`` takes the row's attribute of the same name, after
    ``prefix`` when the row has it (``tier_`` maps ``downgrade_drawdown`` to
    ``tier_downgrade_drawdown``), else without it (``min_closed_for_success_rate``). A field
    the row has under neither name is an error, unless it is named in ``keep_defaults``: a
    renamed setting must never fall back to a default silently.
    """
    values = {}
    for spec in dataclasses.fields(cls):
        for name in dict.fromkeys((prefix + spec.name, spec.name)):
            if hasattr(source, name):
                values[spec.name] = getattr(source, name)
                break
        else:
            if spec.name not in keep_defaults:
                raise AttributeError(
                    f"{type(source).__name__} has no {prefix + spec.name} for {cls.__name__}"
                )
    return cls(**values)


# --- market data ------------------------------------------------------------------------------


@dataclass
class MarketData:
    """Daily bars of a set of entities over the last sessions, as of one instant.

    ``closes`` is an (entities × sessions) float array with NaN where a session has no bar,
    for the correlation; ``bars`` keeps the Decimal (high, low, close) per session for the
    ATR; ``latest`` is the current value of each entity (the most recent snapshot, provided it
    is no older than the previous session).
    """

    symbols: tuple[str, ...]
    sessions: tuple[date, ...]
    closes: np.ndarray
    bars: dict[str, list[tuple[Decimal, Decimal, Decimal]]]
    latest: dict[str, Decimal]
    latest_at: dict[str, datetime]
    bar_days: dict[str, list[date]] = field(default_factory=dict)
    index: dict[str, int] = field(init=False)
    _atr: dict[tuple[str, int], Decimal | None] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {symbol: i for i, symbol in enumerate(self.symbols)}

    def atr(self, symbol: str, period: int) -> Decimal | None:
        """Wilder ATR of the entity over its last bars (memoised: one per entity a cycle)."""
        key = (symbol, period)
        if key not in self._atr:
            bars = self.bars.get(symbol, [])[-(period * 3) :]
            if len(bars) < period + 1:
                self._atr[key] = None
            else:
                highs, lows, closes = zip(*bars, strict=True)
                self._atr[key] = average_true_range(highs, lows, closes, period)
        return self._atr[key]

    def previous_close(self, symbol: str, session: date) -> Decimal | None:
        """The close of the last bar of ``symbol`` before ``session``."""
        days = self.bar_days.get(symbol, [])
        earlier = [i for i, day in enumerate(days) if day < session]
        return self.bars[symbol][earlier[-1]][2] if earlier else None


def current_value_floor(calendar: MarketCalendar, now: datetime) -> datetime:
    """The oldest a data point may be and still be current at ``now``: the open of the session
    before the current one. Older values are stale."""
    return calendar.session_open(calendar.previous_session(calendar.current_session(now)))


def load_market_data(
    symbols: Iterable[str],
    now: datetime,
    sessions: int,
    calendar: MarketCalendar | None = None,
) -> MarketData:
    """Bars of ``symbols`` for the ``sessions`` sessions up to ``now``. One query (none for no
    symbols)."""
    calendar = calendar or get_market_calendar(now)
    ordered = tuple(sorted(set(symbols)))
    today = now.astimezone(NEW_YORK).date()
    if calendar.is_session(today) and now >= calendar.session_close(today):
        last = today
    else:
        # The current session's bar is not complete yet: bars end with the previous session.
        last = calendar.previous_session(today)
    window = calendar.last_sessions(last, sessions)
    previous_open = current_value_floor(calendar, now)
    start = datetime.combine(window[0], datetime.min.time(), tzinfo=NEW_YORK)
    rows = (
        MarketSnapshot.objects.filter(entity_id__in=ordered, as_of__gte=start, as_of__lte=now)
        .order_by("entity_id", "as_of")
        .values_list("entity_id", "as_of", "high", "low", "close")
        if ordered
        else []
    )
    position = {session: j for j, session in enumerate(window)}
    closes = np.full((len(ordered), len(window)), np.nan)
    per_session: dict[str, dict[date, tuple[Decimal, Decimal, Decimal]]] = defaultdict(dict)
    latest: dict[str, Decimal] = {}
    latest_at: dict[str, datetime] = {}
    index = {symbol: i for i, symbol in enumerate(ordered)}
    for symbol, as_of, high, low, close in rows:
        day = as_of.astimezone(NEW_YORK).date()
        j = position.get(day)
        if j is not None:
            per_session[symbol][day] = (high, low, close)
            closes[index[symbol], j] = float(close)
        if as_of >= previous_open:
            latest[symbol] = close
            latest_at[symbol] = as_of
    bar_days = {symbol: sorted(bars_by_day) for symbol, bars_by_day in per_session.items()}
    bars = {symbol: [per_session[symbol][d] for d in days] for symbol, days in bar_days.items()}
    return MarketData(ordered, tuple(window), closes, bars, latest, latest_at, bar_days)


def latest_value(
    symbol: str, now: datetime, calendar: MarketCalendar | None = None
) -> Decimal | None:
    """The current value of one entity as of ``now`` (not older than the previous session).
    One query."""
    calendar = calendar or get_market_calendar(now)
    previous_open = current_value_floor(calendar, now)
    return (
        MarketSnapshot.objects.filter(entity_id=symbol, as_of__lte=now, as_of__gte=previous_open)
        .order_by("-as_of")
        .values_list("close", flat=True)
        .first()
    )


# --- breakers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BreakerInForce:
    """One circuit breaker event in force: pool-wide when ``entity`` is None."""

    event_id: int
    type: str
    entity: str | None
    triggered_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class BreakersInForce:
    """The circuit breakers of a pool in force at an instant (triggered, not expired, not
    cleared), read from ``circuit_breaker_events``: the database is the truth."""

    events: tuple[BreakerInForce, ...] = ()

    @cached_property
    def pool_wide(self) -> tuple[str, ...]:
        """The types of the pool-wide breakers in force, sorted."""
        return tuple(sorted({e.type for e in self.events if e.entity is None}))

    @cached_property
    def until(self) -> datetime | None:
        """When the last pool-wide breaker expires."""
        ends = [e.expires_at for e in self.events if e.entity is None]
        return max(ends) if ends else None

    @cached_property
    def entity_cooldowns(self) -> Mapping[str, datetime]:
        """Entity → end of its loss cooldown."""
        cooldowns: dict[str, datetime] = {}
        for e in self.events:
            if e.entity is not None:
                cooldowns[e.entity] = max(e.expires_at, cooldowns.get(e.entity, e.expires_at))
        return cooldowns

    @property
    def active(self) -> bool:
        """A pool-wide breaker is in force (entity cooldowns block only their entity)."""
        return bool(self.pool_wide)

    def of_type(self, breaker_type: str) -> tuple[BreakerInForce, ...]:
        return tuple(e for e in self.events if e.type == breaker_type)


def in_force(pool: Pool | int | None, now: datetime):
    """The queryset of the breaker events in force at ``now`` (triggered, not expired, not
    cleared), of one pool or, with ``pool=None``, of every pool. Every reader of "breakers in
    force" starts here."""
    events = CircuitBreakerEvent.objects.filter(
        triggered_at__lte=now, expires_at__gt=now, cleared_at__isnull=True
    )
    return events if pool is None else events.filter(pool=pool)


def breakers_in_force(pool: Pool | int, now: datetime) -> BreakersInForce:
    """The breakers of ``pool`` in force at ``now``. One query."""
    rows = in_force(pool, now).order_by("expires_at", "id")
    return BreakersInForce(
        tuple(
            BreakerInForce(pk, kind, symbol, triggered, expires)
            for pk, kind, symbol, triggered, expires in rows.values_list(
                "id", "trigger_type", "entity_id", "triggered_at", "expires_at"
            )
        )
    )


# --- the pool as of now -----------------------------------------------------------------------


#: The order statuses (``execution.models.OrderStatus`` values) of an order whose outcome is
#: not known yet.
UNSETTLED_ORDER_STATUSES = frozenset({"unknown", "submitting"})


@dataclass(frozen=True)
class PendingOrder:
    """An order decided but not yet settled, as the read model counts it.

    An entry (buy) counts as a commitment already made: its cost leaves the spendable cash, its
    value joins its sector and its entity, its estimated heat joins the pool exposure. An exit
    (sell) marks its entity as having an exit pending.
    """

    order_id: int
    symbol: str
    sector: str
    side: str
    units: Decimal
    estimated_value: Decimal
    commitment_id: int | None = None
    #: The order's status ("" when not read): ``unknown`` or ``submitting`` make its entity
    #: unsettled (``PoolState.unsettled``).
    status: str = ""

    @property
    def is_entry(self) -> bool:
        return self.side == "buy"

    @property
    def cost(self) -> Decimal:
        return self.units * self.estimated_value


@dataclass(frozen=True)
class PoolState:
    """A pool as of one instant: what the engine decides with and what an operator reads.

    Currency in currency units, fractions as fractions. ``positions`` are the open commitments
    valued at their current values (the entry value when there is none); ``pending`` the orders
    not yet settled. ``pool_exposure`` is the heat of the positions, ``pending_heat`` the
    estimated heat of the pending entries (units × ATR × the tier's stop multiplier).
    ``sector_values`` and ``commitment_values`` include the pending entries, as the engine
    counts them; ``active_commitments`` is the number of entities held or being entered.
    """

    pool_id: int
    name: str
    now: datetime
    session: date
    tier: TierParams
    halted: bool
    halt_reason: str
    cash: Decimal
    reserve_balance: Decimal
    positions: tuple[PositionView, ...]
    pending: tuple[PendingOrder, ...]
    market: MarketData
    breakers: BreakersInForce
    total_value: Decimal
    active_pool: Decimal
    pool_exposure: Decimal
    pending_cost: Decimal
    pending_heat: Decimal
    daily_gain: Decimal
    realized_today: Decimal
    sector_values: Mapping[str, Decimal]
    commitment_values: Mapping[str, Decimal]
    exits_pending: frozenset[str]
    #: Entities held reduce-only by an open reconciliation event (``reconciliation_holds``).
    reduce_only: frozenset[str] = frozenset()

    @property
    def unsettled(self) -> frozenset[str]:
        """Entities with a pending order whose outcome is not known yet (``unknown`` or
        ``submitting``): they take no new order until it is settled."""
        return frozenset(o.symbol for o in self.pending if o.status in UNSETTLED_ORDER_STATUSES)

    @property
    def spendable_cash(self) -> Decimal:
        """What new commitments may spend: cash − reserve − pending entry costs."""
        return self.cash - self.reserve_balance - self.pending_cost

    @property
    def exposure_cap(self) -> Decimal:
        """The tier's ``max_portfolio_heat`` × the active pool (currency)."""
        return self.tier.max_portfolio_heat * self.active_pool

    @property
    def exposure_ratio(self) -> Decimal:
        """Pool exposure as a fraction of its cap (0 when there is no cap)."""
        cap = self.exposure_cap
        return self.pool_exposure / cap if cap > 0 else ZERO

    @property
    def active_commitments(self) -> int:
        return len(self.commitment_values)

    @property
    def unrealized_gain(self) -> Decimal:
        return sum((p.unrealized_gain for p in self.positions), ZERO)

    @cached_property
    def held(self) -> Mapping[str, PositionView]:
        """Open commitments by entity."""
        return {p.symbol: p for p in self.positions}

    @property
    def unvalued(self) -> tuple[str, ...]:
        """Entities held without a current value (valued at their entry value)."""
        return tuple(sorted(p.symbol for p in self.positions if p.current_value is None))

    def declining(self, loss_pct: Decimal) -> int:
        """How many commitments are down more than ``loss_pct`` (a fraction) from entry."""
        return count_declining(self.positions, loss_pct)


def open_positions(pool: Pool | int, latest: Mapping[str, Decimal]) -> tuple[PositionView, ...]:
    """The open commitments of ``pool`` valued at ``latest``. One query."""
    rows = Commitment.objects.filter(pool=pool, status=CommitmentStatus.OPEN).values(
        "id",
        "entity_id",
        "entity__sector",
        "units",
        "entry_value",
        "risk_threshold",
        "gain_target",
        "trailing_active",
        "atr",
        "opened_at",
    )
    return tuple(
        PositionView(
            commitment_id=row["id"],
            symbol=row["entity_id"],
            sector=row["entity__sector"],
            units=row["units"],
            entry_value=row["entry_value"],
            current_value=latest.get(row["entity_id"]),
            risk_threshold=row["risk_threshold"],
            opened_at=row["opened_at"],
            gain_target=row["gain_target"],
            trailing_active=row["trailing_active"],
            atr=row["atr"],
        )
        for row in rows
    )


@dataclass(frozen=True)
class AccountState:
    """The part of the pool as of one instant that depends on neither the tier nor the pending
    orders: the halt, cash, positions at their current values, the breakers in force, the
    total value and the day's gain (currency units). What the execution gate judges an order
    against; ``pool_as_of`` adds the tier and the pending orders to it."""

    pool_id: int
    now: datetime
    session: date
    session_open: datetime
    halted: bool
    cash: Decimal
    positions: tuple[PositionView, ...]
    market: MarketData
    breakers: BreakersInForce
    total_value: Decimal
    daily_gain: Decimal
    realized_today: Decimal
    #: Entities held reduce-only by an open reconciliation event (``reconciliation_holds``).
    reduce_only: frozenset[str] = frozenset()

    @cached_property
    def held(self) -> Mapping[str, PositionView]:
        """Open commitments by entity."""
        return {p.symbol: p for p in self.positions}

    def sector_value(self, sector: str) -> Decimal:
        """The current value of the positions in ``sector`` (currency)."""
        return sum((p.market_value for p in self.positions if p.sector == sector), ZERO)


def reconciliation_holds(pool: Pool | int) -> frozenset[str]:
    """The entities of ``pool`` held reduce-only: those with an open reconciliation event on
    their units (``execution.reconciliation``), until an operator acknowledges it. One query."""
    return frozenset(
        ReconciliationEvent.objects.filter(
            pool=pool, status=ReconciliationStatus.OPEN, subject=ReconciliationSubject.UNITS
        ).values_list("symbol", flat=True)
    )


def account_as_of(
    pool: Pool,
    now: datetime,
    *,
    sessions: int = 2,
    extra_symbols: Iterable[str] = (),
    calendar: MarketCalendar | None = None,
) -> AccountState:
    """The account of ``pool`` as of ``now`` (see ``AccountState``), from the fields of the
    ``pool`` row given (lock it first when deciding on it).

    ``sessions`` how many sessions of bars to load (at least two: the current values and the
    previous closes); ``extra_symbols`` entities whose bars are needed besides the held ones.
    ``daily_gain`` is the gain since the previous session's close (commitments opened in the
    current session count from their entry) plus the gains realized since the session opened.

    Queries: the open commitments, the bars, the fills of the session, the breakers, the
    reconciliation holds: five.
    """
    calendar = calendar or get_market_calendar(now)
    commitment_rows = open_positions(pool, {})
    symbols = {p.symbol for p in commitment_rows} | set(extra_symbols)
    market = load_market_data(symbols, now, max(sessions, 2), calendar)
    positions = tuple(
        dataclasses.replace(p, current_value=market.latest.get(p.symbol)) for p in commitment_rows
    )
    session = calendar.current_session(now)
    session_open = calendar.session_open(session)
    realized_today = (
        Fill.objects.filter(pool=pool, booked_at__gte=session_open, booked_at__lte=now).aggregate(
            total=Sum("realized_gain")
        )["total"]
        or ZERO
    )
    # The reference of "today" is the close of the last session before the current one, also
    # after the close, when the current session's own bar is already in.
    previous_closes = {
        p.symbol: close
        for p in positions
        if (close := market.previous_close(p.symbol, session)) is not None
    }
    return AccountState(
        pool_id=pool.pk,
        now=now,
        session=session,
        session_open=session_open,
        halted=pool.halted,
        cash=pool.cash,
        positions=positions,
        market=market,
        breakers=breakers_in_force(pool, now),
        total_value=compute_total_value(pool.cash, positions),
        daily_gain=compute_daily_gain(positions, previous_closes, session_open, realized_today),
        realized_today=realized_today,
        reduce_only=reconciliation_holds(pool),
    )


def pool_as_of(
    pool: Pool,
    now: datetime,
    *,
    pending: Iterable[PendingOrder] = (),
    sessions: int = 2,
    extra_symbols: Iterable[str] = (),
    config: EngineConfig | None = None,
    calendar: MarketCalendar | None = None,
) -> PoolState:
    """The pool as of ``now``: positions at their current values, exposure, pending orders
    counted as the engine counts them, breakers in force, reserve and active pool.

    ``pending`` are the orders not yet settled (``execution.selectors.pool_as_of`` loads them);
    ``sessions`` how many sessions of bars to load (the correlation and the ATR need more than
    the valuation's two); ``extra_symbols`` entities whose bars are needed besides the held and
    pending ones (the candidates of a cycle). The account part (positions, breakers, total
    value, the day's gain) is ``account_as_of``'s.

    Queries: the engine configuration unless ``config`` is given, the tier, then
    ``account_as_of``'s five: seven at most.
    """
    calendar = calendar or get_market_calendar(now)
    config = config or get_engine_config(pool)
    tier = tier_params(pool.risk_tier)
    pending = tuple(pending)
    account = account_as_of(
        pool,
        now,
        sessions=sessions,
        extra_symbols={o.symbol for o in pending} | set(extra_symbols),
        calendar=calendar,
    )
    positions = account.positions
    market = account.market

    sector_values: dict[str, Decimal] = {}
    commitment_values: dict[str, Decimal] = {}
    for p in positions:
        sector_values[p.sector] = sector_values.get(p.sector, ZERO) + p.market_value
        commitment_values[p.symbol] = p.market_value
    pending_cost = ZERO
    pending_heat = ZERO
    exits_pending: set[str] = set()
    for order in pending:
        if not order.is_entry:
            exits_pending.add(order.symbol)
            continue
        pending_cost += order.cost
        sector_values[order.sector] = sector_values.get(order.sector, ZERO) + order.cost
        commitment_values[order.symbol] = commitment_values.get(order.symbol, ZERO) + order.cost
        atr = market.atr(order.symbol, config.atr_period)
        if atr is not None:
            pending_heat += order.units * atr * tier.stop_loss_atr_multiplier

    total = account.total_value
    return PoolState(
        pool_id=pool.pk,
        name=pool.name,
        now=now,
        session=account.session,
        tier=tier,
        halted=pool.halted,
        halt_reason=pool.halt_reason,
        cash=pool.cash,
        reserve_balance=pool.reserve_balance,
        positions=positions,
        pending=pending,
        market=market,
        breakers=account.breakers,
        total_value=total,
        active_pool=compute_active_pool(total, pool.reserve_balance),
        pool_exposure=compute_pool_exposure(positions),
        pending_cost=pending_cost,
        pending_heat=pending_heat,
        daily_gain=account.daily_gain,
        realized_today=account.realized_today,
        sector_values=sector_values,
        commitment_values=commitment_values,
        exits_pending=frozenset(exits_pending),
        reduce_only=account.reduce_only,
    )
