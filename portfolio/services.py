"""Loading pool state for the rules, and the pool's own state changes (orchestration).

Every loader reads as of ``now``: nothing dated later is seen, so simulated time and replays
never look into the future. Each loader is a fixed number of queries whatever the number of
entities (noted in its docstring).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
from django.db import transaction

from decisions.sizing import TierParams
from portfolio.indicators import average_true_range
from portfolio.market_calendar import MarketCalendar, get_market_calendar
from portfolio.models import (
    CircuitBreakerEvent,
    Commitment,
    CommitmentStatus,
    EngineConfig,
    MarketSnapshot,
    Pool,
    RiskTierConfig,
    RiskTierHistory,
    TierTrigger,
)
from portfolio.valuation import PositionView

NEW_YORK = ZoneInfo("America/New_York")


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


def current_value_floor(calendar: MarketCalendar, now: datetime) -> datetime:
    """The oldest a data point may be and still be current at ``now``: the open of the session
    before the current one. Older values are stale."""
    return calendar.session_open(calendar.previous_session(calendar.current_session(now)))


def load_market_data(
    symbols: set[str] | list[str],
    now: datetime,
    sessions: int,
    calendar: MarketCalendar | None = None,
) -> MarketData:
    """Bars of ``symbols`` for the ``sessions`` sessions up to ``now``. One query."""
    calendar = calendar or get_market_calendar(now)
    ordered = tuple(sorted(symbols))
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
    """The current value of one entity as of ``now`` (not older than the previous session)."""
    calendar = calendar or get_market_calendar(now)
    previous_open = current_value_floor(calendar, now)
    row = (
        MarketSnapshot.objects.filter(entity_id=symbol, as_of__lte=now, as_of__gte=previous_open)
        .order_by("-as_of")
        .values_list("close", flat=True)
        .first()
    )
    return row


def open_commitment_rows(pool: Pool) -> list[tuple]:
    """(id, symbol, sector, units, entry value, risk threshold, opened at) of the open
    commitments. One query."""
    return list(
        Commitment.objects.filter(pool=pool, status=CommitmentStatus.OPEN).values_list(
            "id",
            "entity_id",
            "entity__sector",
            "units",
            "entry_value",
            "risk_threshold",
            "opened_at",
        )
    )


def to_positions(rows: list[tuple], latest: dict[str, Decimal]) -> list[PositionView]:
    """Value ``open_commitment_rows`` at the current values in ``latest``."""
    return [
        PositionView(cid, symbol, sector, units, entry, latest.get(symbol), stop, opened)
        for cid, symbol, sector, units, entry, stop, opened in rows
    ]


@dataclass(frozen=True)
class BreakerState:
    """Active breakers of a pool as of an instant, read from ``circuit_breaker_events``."""

    pool_wide: tuple[str, ...]
    until: datetime | None
    entity_cooldowns: dict[str, datetime]

    @property
    def active(self) -> bool:
        return bool(self.pool_wide)


def load_breaker_state(pool: Pool, now: datetime) -> BreakerState:
    """Breakers in force at ``now`` (triggered, not expired, not cleared). One query."""
    rows = CircuitBreakerEvent.objects.filter(
        pool=pool, triggered_at__lte=now, expires_at__gt=now, cleared_at__isnull=True
    ).values_list("trigger_type", "entity_id", "expires_at")
    pool_wide: dict[str, datetime] = {}
    cooldowns: dict[str, datetime] = {}
    for kind, symbol, expires in rows:
        if symbol:
            cooldowns[symbol] = max(expires, cooldowns.get(symbol, expires))
        else:
            pool_wide[kind] = max(expires, pool_wide.get(kind, expires))
    until = max(pool_wide.values()) if pool_wide else None
    return BreakerState(tuple(sorted(pool_wide)), until, cooldowns)


def get_engine_config(pool: Pool) -> EngineConfig:
    """The pool's engine configuration, created with the source's defaults if missing."""
    config, _ = EngineConfig.objects.get_or_create(pool=pool)
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


@transaction.atomic
def create_pool(
    name: str,
    *,
    mode: str,
    cash: Decimal,
    tier: str = "conservative",
    adapter: str = "paper",
    now: datetime,
    actor: str = "",
) -> Pool:
    """Create a pool with its engine and risk configuration and its first tier history row."""
    from execution.models import PoolRiskConfig

    pool = Pool(name=name, mode=mode, cash=cash, risk_tier=tier, adapter=adapter)
    pool.full_clean()
    pool.save()
    EngineConfig.objects.create(pool=pool)
    PoolRiskConfig.objects.create(pool=pool)
    RiskTierHistory.objects.create(
        pool=pool,
        previous_tier="",
        new_tier=tier,
        trigger=TierTrigger.INITIAL,
        reason="Pool created",
        actor=actor,
        changed_at=now,
    )
    return pool


@dataclass(frozen=True)
class PoolValuation:
    """A pool valued as of one instant: what the loops and the worker's risk check read."""

    positions: list[PositionView]
    market: MarketData
    total_value: Decimal
    active_pool: Decimal
    pool_exposure: Decimal
    daily_gain: Decimal
    session: date


def value_pool(
    pool: Pool,
    now: datetime,
    *,
    sessions: int = 2,
    extra_symbols: set[str] | frozenset[str] = frozenset(),
    calendar: MarketCalendar | None = None,
) -> PoolValuation:
    """Value the pool's open commitments at their current values. Four queries.

    ``daily_gain`` is the gain since the previous session's close (commitments opened in the
    current session count from their entry), plus the gains realized since the session opened.
    """
    from django.db.models import Sum

    from execution.models import Order, OrderStatus
    from portfolio.valuation import (
        compute_active_pool,
        compute_daily_gain,
        compute_pool_exposure,
        compute_total_value,
    )

    calendar = calendar or get_market_calendar(now)
    rows = open_commitment_rows(pool)
    market = load_market_data({r[1] for r in rows} | set(extra_symbols), now, sessions, calendar)
    positions = to_positions(rows, market.latest)
    session = calendar.current_session(now)
    session_open = calendar.session_open(session)
    # The reference of "today" is the close of the last session before the current one, also
    # after the close, when the current session's own bar is already in.
    previous_closes = {}
    for symbol, days in market.bar_days.items():
        earlier = [i for i, day in enumerate(days) if day < session]
        if earlier:
            previous_closes[symbol] = market.bars[symbol][earlier[-1]][2]
    realized_today = Order.objects.filter(
        pool=pool, status=OrderStatus.FILLED, filled_at__gte=session_open, filled_at__lte=now
    ).aggregate(total=Sum("realized_gain"))["total"] or Decimal("0")
    total = compute_total_value(pool.cash, positions)
    return PoolValuation(
        positions=positions,
        market=market,
        total_value=total,
        active_pool=compute_active_pool(total, pool.reserve_balance),
        pool_exposure=compute_pool_exposure(positions),
        daily_gain=compute_daily_gain(positions, previous_closes, session_open, realized_today),
        session=session,
    )


@transaction.atomic
def set_halt(pool_name: str, *, halted: bool, reason: str, actor: str) -> bool:
    """Halt (no new entries; exits still flow) or resume a pool; False when nothing changes."""
    pool = Pool.objects.select_for_update().get(name=pool_name)
    if halted and not reason.strip():
        raise ValueError("a reason is required to halt a pool")
    if pool.halted == halted:
        return False
    pool.halted = halted
    pool.halt_reason = f"{reason} ({actor})" if halted else ""
    pool.save(update_fields=["halted", "halt_reason", "updated_at"])
    return True


def rule_config(cls, source, *, prefix: str = "", keep_defaults: tuple[str, ...] = ()):
    """A pure rule's frozen configuration built from a configuration row.

    Each field of the dataclass ``cls`` takes the row's attribute of the same name (after
    ``prefix``: ``tier_`` maps ``downgrade_drawdown`` to ``tier_downgrade_drawdown``). A field
    the row does not have is an error, unless it is named in ``keep_defaults``: a renamed
    setting must never fall back to a default silently.
    """
    import dataclasses

    values = {}
    for spec in dataclasses.fields(cls):
        name = prefix + spec.name
        if hasattr(source, name):
            values[spec.name] = getattr(source, name)
        elif spec.name not in keep_defaults:
            raise AttributeError(f"{type(source).__name__} has no {name} for {cls.__name__}")
    return cls(**values)
