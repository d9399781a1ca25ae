"""A small desk for the operator console's tests: two pools, bars, recommendations, one engine
pass each through the real code paths (``decisions.engine.run_engine_pass``), a history of
snapshots for the charts and, on one pool, a daily-loss breaker in force.

The engine runs on a simulated clock in the last complete session (11:30 New York time), so the
decisions have their checks and sizing whatever the wall-clock time of the run; the bars reach
the last complete session before the wall clock, so the pages (which read the pool as of the
wall clock) value the commitments at a current value; the breaker is in force at the wall
clock.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.apps import apps
from django.contrib.auth.models import User

from decisions.engine import run_engine_pass
from decisions.models import DecisionRecord
from portfolio.breakers import record_trigger
from portfolio.circuit_breaker import BreakerTrigger, BreakerType
from portfolio.market_calendar import get_market_calendar
from portfolio.models import CircuitBreakerEvent, Pool, PoolSnapshot
from tests import factories

USERNAME = "operator"
PASSWORD = "console-pass-1"
#: The entities of the desk: (symbol, sector).
ENTITIES = (("AAA", "Technology"), ("BBB", "Energy"), ("CCC", "Health"), ("DDD", "Finance"))
#: Sessions of snapshot history drawn on the charts.
HISTORY_SESSIONS = 40


@dataclass(frozen=True)
class Desk:
    """What ``build_desk`` made: the pools, the simulated clock, the breaker in force and the
    act decision (the one with a sizing waterfall)."""

    calm: Pool
    hot: Pool
    sim_now: datetime
    breaker: CircuitBreakerEvent
    act: DecisionRecord


def simulated_now(now: datetime) -> datetime:
    """11:30 New York time in the last complete session before ``now``."""
    calendar = get_market_calendar(now)
    day = calendar.previous_session(calendar.current_session(now))
    return calendar.session_open(day) + timedelta(hours=2)


def add_snapshot_history(pool: Pool, before: datetime, *, start: float, dip: float) -> None:
    """``HISTORY_SESSIONS`` daily snapshots up to the session before ``before``: a value that
    rises, falls by ``dip`` (a fraction) and recovers part of it, a reserve that grows."""
    days = factories.sessions_before(before, HISTORY_SESSIONS)
    calendar = get_market_calendar(before)
    rows = []
    for i, day in enumerate(days):
        phase = i / (len(days) - 1)
        value = start * (1 + 0.08 * phase - dip * math.sin(math.pi * phase) ** 2)
        reserve = start * 0.05 * (1 + phase * 3)
        value_d = Decimal(str(round(value, 2)))
        reserve_d = Decimal(str(round(reserve, 2)))
        rows.append(
            PoolSnapshot(
                pool=pool,
                session=day,
                taken_at=calendar.session_close(day),
                total_value=value_d,
                cash=value_d * Decimal("0.6"),
                reserve_balance=reserve_d,
                active_pool=value_d - reserve_d,
                unrealized_gain=Decimal("0"),
                realized_gain=Decimal("0"),
                pool_exposure=(value_d - reserve_d) * Decimal(str(round(0.02 + 0.03 * phase, 4))),
                open_commitments=1 + i % 3,
                risk_tier=pool.risk_tier,
            )
        )
    PoolSnapshot.objects.bulk_create(rows, ignore_conflicts=True)


def build_desk(now: datetime) -> Desk:
    """The desk as of the wall-clock ``now``, with the console's user (``USERNAME``)."""
    # A transactional test starts from a flushed database: the tiers of the migration first.
    importlib.import_module("portfolio.migrations.0002_risk_tiers").create_tiers(apps, None)
    User.objects.create_superuser(USERNAME, "operator@example.com", PASSWORD)
    sim = simulated_now(now)
    calm = factories.make_pool(now=sim, name="calm-desk")
    hot = factories.make_pool(now=sim, name="hot-desk")
    for symbol, sector in ENTITIES:
        factories.add_bars(symbol, now, sector=sector)
    factories.make_recommendation("AAA", sim, confidence="0.80", rec_id="rec-aaa-act")
    factories.make_recommendation("BBB", sim, confidence="0.30", rec_id="rec-bbb-low")
    factories.make_recommendation("CCC", sim, action="defer", rec_id="rec-ccc-defer")
    factories.make_recommendation("DDD", sim, confidence="0.85", rec_id="rec-ddd-act")
    add_snapshot_history(calm, sim, start=100_000, dip=0.04)
    add_snapshot_history(hot, sim, start=100_000, dip=0.18)
    for pool in (calm, hot):
        run_engine_pass(pool.pk, sim)
    breaker = record_trigger(
        hot,
        BreakerTrigger(
            BreakerType.DAILY_LOSS,
            now - timedelta(minutes=5),
            now + timedelta(hours=2),
            None,
            {"daily_loss_pct": "0.061", "limit": "0.05"},
        ),
        now,
    )
    assert breaker is not None
    act = DecisionRecord.objects.get(pool=hot, recommendation_id="rec-aaa-act")
    return Desk(calm, hot, sim, breaker, act)
