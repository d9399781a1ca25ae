"""Small factories that build test data through the real models and orchestration functions."""

from __future__ import annotations

import itertools
import math
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from decisions.models import Recommendation
from portfolio.actions import create_pool
from portfolio.market_calendar import get_market_calendar
from portfolio.models import (
    EngineConfig,
    Entity,
    MarketSnapshot,
    PerformanceReport,
    Pool,
    PoolRiskConfig,
)

NEW_YORK = ZoneInfo("America/New_York")
_ids = itertools.count(1)


def make_pool(
    *,
    now: datetime,
    name: str | None = None,
    cash: str = "100000",
    tier: str = "moderate",
    mode: str = "simulation",
    cap: str = "100000",
    **engine_settings,
) -> Pool:
    """A pool with an absolute cap high enough not to mask the other sizing steps."""
    pool = create_pool(
        name or f"pool-{next(_ids)}",
        mode=mode,
        cash=Decimal(cash),
        tier=tier,
        now=now,
        actor="tests",
        reason="test pool",
    )
    EngineConfig.objects.filter(pool=pool).update(
        absolute_commitment_cap=Decimal(cap), **engine_settings
    )
    PoolRiskConfig.objects.filter(pool=pool).update(max_order_notional=Decimal("1000000"))
    return pool


def sessions_before(now: datetime, count: int) -> list[date]:
    """The ``count`` complete sessions before ``now``, oldest first."""
    calendar = get_market_calendar(now)
    today = calendar.current_session(now)
    last = calendar.previous_session(today)
    local = now.astimezone(NEW_YORK).date()
    if calendar.is_session(local) and now >= calendar.session_close(today):
        last = today
    return calendar.last_sessions(last, count)


def make_entity(symbol: str, sector: str = "Technology") -> Entity:
    entity, _ = Entity.objects.get_or_create(
        symbol=symbol, defaults={"name": symbol, "sector": sector}
    )
    return entity


def add_bars(
    symbol: str,
    now: datetime,
    closes: list[float] | None = None,
    *,
    sessions: int = 40,
    start: float = 100.0,
    spread: float = 2.0,
    sector: str = "Technology",
) -> Entity:
    """Daily bars at each session's close, ending with the last complete session before now.

    Without ``closes`` the series is a deterministic wave unique to the symbol, so two symbols
    are not perfectly correlated.
    """
    entity = make_entity(symbol, sector)
    days = sessions_before(now, len(closes) if closes else sessions)
    if closes is None:
        phase = sum(map(ord, symbol)) % 17
        closes = [start + 5 * math.sin((i + phase) * (1 + phase / 10)) for i in range(len(days))]
    calendar = get_market_calendar(now)
    MarketSnapshot.objects.bulk_create(
        [
            MarketSnapshot(
                entity=entity,
                as_of=calendar.session_close(day),
                open=Decimal(str(round(close, 4))),
                high=Decimal(str(round(close + spread / 2, 4))),
                low=Decimal(str(round(close - spread / 2, 4))),
                close=Decimal(str(round(close, 4))),
                volume=1000,
            )
            for day, close in zip(days, closes, strict=True)
        ]
    )
    return entity


def make_recommendation(
    symbol: str,
    now: datetime,
    *,
    action: str = "act",
    confidence: str = "0.80",
    mode: str = "simulation_eligible",
    age_minutes: int = 5,
    rec_id: str | None = None,
) -> Recommendation:
    return Recommendation.objects.create(
        id=rec_id or f"rec-{next(_ids)}",
        entity_id=symbol,
        action=action,
        mode=mode,
        confidence=Decimal(confidence),
        generated_at=now - timedelta(minutes=age_minutes),
        thesis="test",
        risk_classification="medium",
    )


def add_report(symbol: str, report_date: date) -> PerformanceReport:
    return PerformanceReport.objects.create(entity_id=symbol, report_date=report_date)
