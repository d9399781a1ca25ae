"""Circuit breaker triggers and cooldowns: pure rules, no Django, no clock.

Implements "Circuit Breaker" of the source document:
"a pure computation module that evaluates three independent trigger conditions" (daily loss,
single commitment loss, volatility from risk threshold clustering) and the cooldown computation.
It carries no state of its own: the caller loads the hits, values and cooldowns, passes ``now``,
and persists a returned :class:`BreakerTrigger` (``circuit_breaker_events`` and the cache).

Fractions are fractions (0.05 = 5 %), values are currency, datetimes are aware and compared as
given. A check that does not trip returns ``None``; tripping is data, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

__all__ = [
    "BreakerConfig",
    "BreakerTrigger",
    "BreakerType",
    "check_daily_loss",
    "check_single_position",
    "check_volatility",
    "compute_cooldown_expiry",
    "is_active",
    "is_ticker_cooled_down",
]

ZERO = Decimal("0")


class BreakerType(StrEnum):
    """The three independent triggers; values match ``portfolio.models.BreakerType``."""

    DAILY_LOSS = "daily_loss"
    SINGLE_POSITION = "single_position"
    VOLATILITY = "volatility"


@dataclass(frozen=True)
class BreakerConfig:
    """The breaker's numbers, with the source's defaults.

    ``daily_loss_pct`` and ``single_position_loss_pct`` are fractions (0.05 = 5 %);
    ``stop_loss_hits_threshold`` is a count of risk threshold hits, ``stop_loss_window_minutes``
    minutes, ``volatility_pause_hours`` and ``ticker_cooldown_hours`` hours.

    Raises ``ValueError`` on a threshold below 1 hit or a negative duration, since the volatility
    check and the cooldowns would be meaningless.
    """

    daily_loss_pct: Decimal = Decimal("0.05")
    single_position_loss_pct: Decimal = Decimal("0.15")
    stop_loss_hits_threshold: int = 3
    stop_loss_window_minutes: int = 30
    volatility_pause_hours: int = 2
    ticker_cooldown_hours: int = 48

    def __post_init__(self) -> None:
        if self.stop_loss_hits_threshold < 1:
            raise ValueError(
                f"stop_loss_hits_threshold must be >= 1, got {self.stop_loss_hits_threshold}"
            )
        for name in ("stop_loss_window_minutes", "volatility_pause_hours", "ticker_cooldown_hours"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class BreakerTrigger:
    """A tripped breaker, ready to persist.

    ``entity`` is the symbol for an entity-specific cooldown (single commitment loss), ``None``
    for a pool-wide breaker. ``figures`` is JSON-safe (Decimals as strings, datetimes as ISO 8601)
    and records what tripped it: the observed value and the limit.
    """

    type: BreakerType
    triggered_at: datetime
    expires_at: datetime
    entity: str | None
    figures: dict = field(default_factory=dict)


def compute_cooldown_expiry(
    type: BreakerType, triggered_at: datetime, config: BreakerConfig
) -> datetime:
    """When a breaker triggered at ``triggered_at`` expires (source, "Cooldown Computation").

    daily_loss and volatility: ``triggered_at + volatility_pause_hours``; single_position:
    ``triggered_at + ticker_cooldown_hours``, the affected entity's longer cooling-off period.
    """
    if type is BreakerType.SINGLE_POSITION:
        return triggered_at + timedelta(hours=config.ticker_cooldown_hours)
    return triggered_at + timedelta(hours=config.volatility_pause_hours)


def _trigger(
    type: BreakerType,
    now: datetime,
    config: BreakerConfig,
    entity: str | None,
    figures: dict,
) -> BreakerTrigger:
    return BreakerTrigger(
        type=type,
        triggered_at=now,
        expires_at=compute_cooldown_expiry(type, now, config),
        entity=entity,
        figures=figures,
    )


def check_daily_loss(
    daily_gain: Decimal, total_value: Decimal, now: datetime, config: BreakerConfig
) -> BreakerTrigger | None:
    """The daily loss trigger: trips when the pool's loss today exceeds ``daily_loss_pct``.

    ``daily_gain`` is the pool's gain since the previous close in currency (negative: a loss),
    ``total_value`` the total resource pool value in currency. The loss ratio
    ``|daily_gain| / total_value`` (a fraction) trips when strictly greater than
    ``daily_loss_pct``: a loss of exactly 5 % does not trip. A gain or zero never trips, and a
    total value ≤ 0 gives no ratio, so ``None``. The cooldown is ``volatility_pause_hours``.
    """
    if total_value <= 0 or daily_gain >= 0:
        return None
    loss_ratio = -daily_gain / total_value
    if loss_ratio <= config.daily_loss_pct:
        return None
    return _trigger(
        BreakerType.DAILY_LOSS,
        now,
        config,
        None,
        {
            "daily_gain": str(daily_gain),
            "total_value": str(total_value),
            "loss_ratio": str(loss_ratio),
            "limit": str(config.daily_loss_pct),
        },
    )


def check_single_position(
    symbol: str,
    entry_value: Decimal,
    current_value: Decimal,
    now: datetime,
    config: BreakerConfig,
) -> BreakerTrigger | None:
    """The single commitment loss trigger: an entity-specific cooldown for ``symbol``.

    ``entry_value`` and ``current_value`` are in the same unit (both per unit, or both for the
    whole commitment). The loss fraction ``(entry − current) / entry`` trips when strictly greater
    than ``single_position_loss_pct``: a loss of exactly 15 % does not trip. An entry value ≤ 0
    gives no fraction, so ``None``. The cooldown is ``ticker_cooldown_hours`` and
    ``entity`` is ``symbol``.
    """
    if entry_value <= 0:
        return None
    loss_fraction = (entry_value - current_value) / entry_value
    if loss_fraction <= config.single_position_loss_pct:
        return None
    return _trigger(
        BreakerType.SINGLE_POSITION,
        now,
        config,
        symbol,
        {
            "entry_value": str(entry_value),
            "current_value": str(current_value),
            "loss_fraction": str(loss_fraction),
            "limit": str(config.single_position_loss_pct),
        },
    )


def check_volatility(
    hit_times: Sequence[datetime], now: datetime, config: BreakerConfig
) -> BreakerTrigger | None:
    """The volatility trigger (risk threshold clustering), the source's sliding window.

    ``hit_times`` are the instants risk thresholds fired, in any order; only hits at or before
    ``now`` count (a hit stamped later has not happened as of ``now``). The hits are sorted and
    every run of ``stop_loss_hits_threshold`` consecutive hits is checked: the breaker trips when
    the first and last hit of some run are at most ``stop_loss_window_minutes`` apart (3 hits
    within exactly 30 minutes trip; 30 minutes 1 second apart do not; fewer hits than the
    threshold never trip). The verdict depends only on the set of hits, not their order.

    The most recent fitting run is reported, since it is the cascade that justifies pausing now.
    ``triggered_at`` is ``now`` and the cooldown ``volatility_pause_hours``. The caller chooses
    which hits to pass: an old cluster still trips, so it passes only the hits since the last
    volatility trigger (or a recent lookback), as the source's rolling window intends.
    """
    size = config.stop_loss_hits_threshold
    window = timedelta(minutes=config.stop_loss_window_minutes)
    hits = sorted(t for t in hit_times if t <= now)
    for start in range(len(hits) - size, -1, -1):
        run = hits[start : start + size]
        span = run[-1] - run[0]
        if span <= window:
            return _trigger(
                BreakerType.VOLATILITY,
                now,
                config,
                None,
                {
                    "hits": [t.isoformat() for t in run],
                    "span_seconds": span.total_seconds(),
                    "hits_threshold": size,
                    "window_minutes": config.stop_loss_window_minutes,
                    "hits_considered": len(hits),
                },
            )
    return None


def is_active(
    expires_at: datetime | None, now: datetime, cleared_at: datetime | None = None
) -> bool:
    """Whether a breaker with this expiry is in force at ``now``.

    Active while ``now < expires_at``: at the exact second of expiry it no longer is. A breaker
    cleared (by an operator) at or before ``now`` is not active; no expiry (``None``) means no
    breaker, so not active.
    """
    if expires_at is None:
        return False
    if cleared_at is not None and cleared_at <= now:
        return False
    return now < expires_at


def is_ticker_cooled_down(cooldowns: Mapping[str, datetime], symbol: str, now: datetime) -> bool:
    """True when ``symbol`` has cooled down, i.e. it MAY be entered again.

    Polarity: ``True`` = no cooldown in force (none recorded, or its expiry has been reached);
    ``False`` = the entity is still within its cooldown window and must not be re-entered.
    ``cooldowns`` maps a symbol to its cooldown expiry (the source's ``ticker_cooldowns``);
    the expiry instant itself counts as cooled down, as in :func:`is_active`.
    """
    return not is_active(cooldowns.get(symbol), now)
