"""The four loops beside the decision loop, against a real database and the paper broker.

Commitments are opened for real (decision cycle + worker) unless a test needs a position larger
than the sizer would ever take; values move through market snapshots, as in production.
Unless stated otherwise every entity has 20 flat bars at 100 with a 2.0 range: ATR 2, so a
moderate commitment entered at 100 has its risk threshold at 96 and its gain target at 106.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from decisions.engine import run_decision_cycle
from decisions.loops import (
    rebalance_due,
    run_performance_loop,
    run_rebalancer,
    run_risk_threshold_monitor,
    run_risk_tier_scheduler,
)
from decisions.models import DecisionRecord, Recommendation
from execution.models import Order
from execution.selectors import pool_as_of
from execution.worker import drain_queued_orders
from portfolio.actions import set_risk_tier
from portfolio.breakers import record_trigger
from portfolio.circuit_breaker import BreakerTrigger, BreakerType
from portfolio.errors import ActionError
from portfolio.market_calendar import get_market_calendar
from portfolio.models import (
    CircuitBreakerEvent,
    Commitment,
    EngineConfig,
    MarketSnapshot,
    Pool,
    PoolSnapshot,
    ReserveLedgerEntry,
    RiskTierHistory,
)
from tests import factories

D = Decimal
SECTORS = ["Tech", "Energy", "Health", "Utilities", "Retail"]

# --- helpers ----------------------------------------------------------------------------------


def flat_entity(symbol: str, now: datetime, *, sector: str = "Tech", spread: float = 2.0):
    """20 flat bars at 100 ending with the last complete session before ``now``."""
    return factories.add_bars(symbol, now, closes=[100.0] * 20, spread=spread, sector=sector)


def open_commitments(
    pool: Pool, now: datetime, symbols: list[str], *, confidence: str = "0.80"
) -> dict[str, Commitment]:
    """Open one commitment per symbol through a decision cycle and the paper broker."""
    for symbol in symbols:
        factories.make_recommendation(symbol, now, confidence=confidence)
    run_decision_cycle(pool.pk, now, dispatch=False)
    drain_queued_orders(pool, now)
    held = {c.entity_id: c for c in Commitment.objects.filter(pool=pool, status="open")}
    assert set(held) == set(symbols)
    return held


def held_flat(pool: Pool, now: datetime, count: int = 1, prefix: str = "H") -> list[Commitment]:
    """``count`` commitments entered at 100 in distinct sectors, stop 96, target 106."""
    symbols = [f"{prefix}{i}" for i in range(count)]
    for i, symbol in enumerate(symbols):
        flat_entity(symbol, now, sector=SECTORS[i % len(SECTORS)])
    held = open_commitments(pool, now, symbols)
    commitments = [held[s] for s in symbols]
    for c in commitments:
        assert (c.entry_value, c.risk_threshold, c.gain_target) == (D("100"), D("96"), D("106"))
    return commitments


def mark(symbol: str, at: datetime, value: str | Decimal, *, high=None, low=None) -> None:
    """A data point of ``symbol`` as of ``at``: its current value from then on."""
    value = D(value)
    MarketSnapshot.objects.create(
        entity_id=symbol,
        as_of=at,
        open=value,
        high=D(high) if high is not None else value,
        low=D(low) if low is not None else value,
        close=value,
    )


def hold_directly(
    pool: Pool, symbol: str, units: str, entry: str, opened_at: datetime
) -> Commitment:
    """A commitment as the worker books a fill, for positions larger than the sizer allows."""
    pool.cash -= D(units) * D(entry)
    pool.save(update_fields=["cash"])
    return Commitment.objects.create(
        pool=pool,
        entity_id=symbol,
        units=D(units),
        entry_value=D(entry),
        entry_cost=D(units) * D(entry),
        risk_tier=pool.risk_tier,
        opened_at=opened_at,
    )


def add_pool_snapshot(pool: Pool, session: date, total: str) -> PoolSnapshot:
    """The snapshot a past session left behind: the value history the metrics read."""
    calendar = get_market_calendar(datetime(2026, 11, 18, tzinfo=UTC))
    return PoolSnapshot.objects.create(
        pool=pool,
        session=session,
        taken_at=calendar.session_close(session),
        total_value=D(total),
        cash=D(total),
        reserve_balance=pool.reserve_balance,
        active_pool=D(total) - pool.reserve_balance,
        unrealized_gain=D("0"),
        realized_gain=D("0"),
        risk_tier=pool.risk_tier,
    )


def pool_breaker(pool: Pool, kind: BreakerType, at: datetime, hours: int = 2):
    """A pool-wide breaker in force from ``at`` for ``hours``, recorded the real way."""
    return record_trigger(
        pool, BreakerTrigger(kind, at, at + timedelta(hours=hours), None, {"test": True}), at
    )


def decision_for(rec: Recommendation) -> DecisionRecord:
    return DecisionRecord.objects.filter(recommendation=rec).latest("id")


def sells(pool: Pool):
    return Order.objects.filter(pool=pool, side="sell").order_by("id")


# --- risk threshold monitor: exits ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("96.01", None),  # just above the risk threshold
        ("96", "risk_threshold"),  # at it
        ("95", "risk_threshold"),
        ("105.99", None),  # just under the gain target (trailing, stop 101.99 still below)
        ("106", "gain_target"),  # at it
        ("107.50", "gain_target"),
    ],
)
def test_monitor_exits_the_full_quantity_at_a_crossed_level(pool, session_now, value, reason):
    (commitment,) = held_flat(pool, session_now)
    later = session_now + timedelta(minutes=30)
    mark("H0", later - timedelta(minutes=1), value)

    result = run_risk_threshold_monitor(pool.pk, later, dispatch=False)

    orders = list(sells(pool))
    if reason is None:
        assert orders == [] and result.order_ids == []
        return
    (order,) = orders
    assert result.order_ids == [order.pk]
    assert (order.reason, order.status, order.quantity) == (reason, "queued", commitment.units)
    assert order.commitment_id == commitment.pk and order.estimated_value == D(value)
    assert order.created_at == later

    again = run_risk_threshold_monitor(pool.pk, later + timedelta(minutes=1), dispatch=False)

    assert again.order_ids == [] and sells(pool).count() == 1


def test_monitor_judges_a_crossing_by_the_levels_in_force_before_the_same_bar_moves_them(
    pool, session_now
):
    """The session's bar closes above the gain target (106) with a range wide enough to lift
    the ATR by more than 10 %: the re-evaluation it triggers moves the target to 108.14, above
    the close. The crossing is judged by the levels set from earlier information, so the
    commitment exits at its target; the re-evaluated levels serve the next observation."""
    (commitment,) = held_flat(pool, session_now)
    calendar = get_market_calendar(session_now)
    session = calendar.current_session(session_now)
    mark("H0", calendar.session_close(session), "107", high="112", low="100")
    next_open = calendar.session_open(calendar.next_session(session)) + timedelta(minutes=5)

    result = run_risk_threshold_monitor(pool.pk, next_open, dispatch=False)

    (order,) = sells(pool)
    assert (order.reason, order.quantity, order.estimated_value) == (
        "gain_target",
        commitment.units,
        D("107"),
    )
    assert "crossed its gain target 106" in order.note
    assert result.order_ids == [order.pk]
    commitment.refresh_from_db()
    # The same bar re-evaluated the levels (ATR 2 → 2.7143): the target moved beyond the close.
    assert commitment.gain_target == D("108.1429")
    assert commitment.risk_threshold > D("96")


@pytest.mark.parametrize(("value", "reason"), [("95", "risk_threshold"), ("106", "gain_target")])
def test_worker_fills_a_monitor_exit_and_closes_the_commitment(pool, session_now, value, reason):
    (commitment,) = held_flat(pool, session_now)
    cash_before = Pool.objects.get(pk=pool.pk).cash
    later = session_now + timedelta(minutes=30)
    mark("H0", later - timedelta(minutes=1), value)

    run_risk_threshold_monitor(pool.pk, later, dispatch=False)
    drain_queued_orders(pool, later)

    units = commitment.units
    commitment.refresh_from_db()
    assert commitment.status == "closed" and commitment.units == 0
    assert commitment.close_reason == reason
    assert commitment.exit_value == D(value) and commitment.closed_at == later
    assert commitment.realized_gain == (D(value) - D("100")) * units
    assert Pool.objects.get(pk=pool.pk).cash == cash_before + units * D(value)
    assert sells(pool).get().status == "filled"


@pytest.mark.parametrize(
    "closed_at",
    [
        datetime(2026, 11, 18, 21, 0, tzinfo=UTC),  # 16:00 ET: the close itself
        datetime(2026, 11, 19, 14, 29, tzinfo=UTC),  # 09:29 ET, before the open
        datetime(2026, 11, 21, 16, 0, tzinfo=UTC),  # Saturday
        datetime(2026, 11, 26, 16, 0, tzinfo=UTC),  # Thanksgiving
        datetime(2026, 11, 27, 18, 0, tzinfo=UTC),  # 13:00 ET on the early close
    ],
)
def test_monitor_does_nothing_while_the_exchange_is_closed(pool, session_now, closed_at):
    (commitment,) = held_flat(pool, session_now)
    mark("H0", session_now + timedelta(minutes=1), "80")

    result = run_risk_threshold_monitor(pool.pk, closed_at, dispatch=False)

    assert (result.ran, result.detail) == (False, "exchange closed")
    assert not sells(pool).exists()
    assert not CircuitBreakerEvent.objects.exists()
    commitment.refresh_from_db()
    assert commitment.risk_threshold == D("96") and commitment.highest_value == D("100")


# --- risk threshold monitor: levels -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "trailing", "stop"),
    [
        ("102", False, "96"),  # a third of the way to the target
        ("103", False, "96"),  # exactly half-way: not past it
        ("103.01", True, "99.01"),  # trails at highest − ATR × 2
        ("104", True, "100"),
    ],
)
def test_trailing_activates_after_a_rise_past_half_way(pool, session_now, value, trailing, stop):
    held_flat(pool, session_now)
    later = session_now + timedelta(minutes=30)
    mark("H0", later - timedelta(minutes=1), value)

    run_risk_threshold_monitor(pool.pk, later, dispatch=False)

    commitment = Commitment.objects.get(entity_id="H0")
    assert commitment.trailing_active is trailing
    assert commitment.risk_threshold == D(stop)
    assert commitment.highest_value == D(value)
    assert commitment.gain_target == D("106")
    assert not sells(pool).exists()


def test_trailing_stop_holds_through_a_pullback(pool, session_now):
    held_flat(pool, session_now)
    first = session_now + timedelta(minutes=30)
    mark("H0", first - timedelta(minutes=1), "104")
    run_risk_threshold_monitor(pool.pk, first, dispatch=False)
    second = first + timedelta(minutes=10)
    mark("H0", second - timedelta(minutes=1), "101")

    run_risk_threshold_monitor(pool.pk, second, dispatch=False)

    commitment = Commitment.objects.get(entity_id="H0")
    assert commitment.trailing_active
    assert (commitment.risk_threshold, commitment.highest_value) == (D("100"), D("104"))
    assert not sells(pool).exists()


@pytest.mark.parametrize(
    ("bar_range", "atr", "stop", "target"),
    [
        # Wilder: (2 × 13 + range) / 14. A range of 4.8 moves the ATR by exactly 10 %.
        ("4.8", "2", "96", "106"),
        # ATR 2.2857 (+14 %): re-evaluated stop 95.4286 would be lower, so 96 stays;
        # the target follows: 100 + 4.5714 × 1.5.
        ("6", "2.2857", "96", "106.8571"),
    ],
)
def test_levels_are_re_evaluated_when_the_atr_moves_more_than_ten_percent(
    pool, session_now, bar_range, atr, stop, target
):
    held_flat(pool, session_now)
    calendar = get_market_calendar(session_now)
    half = D(bar_range) / 2
    mark("H0", calendar.session_close(date(2026, 11, 18)), "100", high=100 + half, low=100 - half)
    next_day = datetime(2026, 11, 19, 16, 0, tzinfo=UTC)

    run_risk_threshold_monitor(pool.pk, next_day, dispatch=False)

    commitment = Commitment.objects.get(entity_id="H0")
    assert (commitment.atr, commitment.risk_threshold, commitment.gain_target) == (
        D(atr),
        D(stop),
        D(target),
    )


def test_a_falling_atr_re_evaluates_and_raises_the_stop(pool, session_now):
    """A commitment whose levels came from an ATR of 3 meets a market ATR of 2 (−33 %)."""
    flat_entity("H0", session_now)
    commitment = hold_directly(pool, "H0", "50", "100", session_now - timedelta(days=1))
    Commitment.objects.filter(pk=commitment.pk).update(
        atr=D("3"), risk_threshold=D("94"), gain_target=D("109"), highest_value=D("100")
    )

    run_risk_threshold_monitor(pool.pk, session_now, dispatch=False)

    commitment.refresh_from_db()
    assert (commitment.atr, commitment.risk_threshold, commitment.gain_target) == (
        D("2"),
        D("96"),
        D("106"),
    )


# --- risk threshold monitor: breakers ---------------------------------------------------------


@pytest.mark.parametrize(("crossing", "trips"), [(2, False), (3, True)])
def test_risk_threshold_exits_in_one_run_count_towards_the_volatility_breaker(
    pool, session_now, crossing, trips
):
    held_flat(pool, session_now, count=3)
    later = session_now + timedelta(minutes=30)
    for i in range(crossing):
        mark(f"H{i}", later - timedelta(minutes=1), "95")

    result = run_risk_threshold_monitor(pool.pk, later, dispatch=False)

    assert sells(pool).filter(reason="risk_threshold").count() == crossing
    events = list(CircuitBreakerEvent.objects.filter(pool=pool, trigger_type="volatility"))
    assert len(events) == (1 if trips else 0)
    assert ("volatility breaker" in result.events) is trips
    if trips:
        (event,) = events
        assert event.entity_id is None
        assert (event.triggered_at, event.expires_at) == (later, later + timedelta(hours=2))
        assert event.figures["hits_threshold"] == 3 and len(event.figures["hits"]) == 3


@pytest.mark.parametrize(
    ("minutes", "trips"),
    [
        ((0, 10, 20), True),
        ((0, 16, 31), False),  # the first hit has left the window at the third
        ((0, 15, 30), True),  # three hits in exactly 30 minutes
    ],
)
def test_risk_threshold_exits_across_runs_trip_the_volatility_breaker_within_the_window(
    pool, session_now, minutes, trips
):
    held_flat(pool, session_now, count=3)
    start = session_now + timedelta(minutes=10)
    for i, offset in enumerate(minutes):
        at = start + timedelta(minutes=offset)
        mark(f"H{i}", at - timedelta(seconds=30), "95")
        run_risk_threshold_monitor(pool.pk, at, dispatch=False)

    assert sells(pool).filter(reason="risk_threshold").count() == 3
    volatility = CircuitBreakerEvent.objects.filter(pool=pool, trigger_type="volatility")
    assert volatility.count() == (1 if trips else 0)


@pytest.mark.parametrize(("value", "trips"), [("85", False), ("84", True)])  # 15 % vs 16 % down
def test_commitment_down_more_than_fifteen_percent_cools_its_entity_down(
    pool, session_now, value, trips
):
    held_flat(pool, session_now)
    flat_entity("FREE", session_now, sector="Energy")
    later = session_now + timedelta(minutes=30)
    mark("H0", later - timedelta(minutes=1), value)

    result = run_risk_threshold_monitor(pool.pk, later, dispatch=False)

    events = list(CircuitBreakerEvent.objects.filter(pool=pool, trigger_type="single_position"))
    assert [e.entity_id for e in events] == (["H0"] if trips else [])
    assert ("single-commitment breaker on H0" in result.events) is trips
    if trips:
        assert events[0].expires_at == later + timedelta(hours=48)
        assert D(events[0].figures["current_value"]) == D(value)

    drain_queued_orders(pool, later)
    assert Commitment.objects.get(entity_id="H0").status == "closed"
    cycle_at = later + timedelta(minutes=5)
    back_in = factories.make_recommendation("H0", cycle_at, confidence="0.90")
    other = factories.make_recommendation("FREE", cycle_at, confidence="0.90")

    run_decision_cycle(pool.pk, cycle_at, dispatch=False)

    assert decision_for(back_in).skip_reason == ("entity_cooldown_active" if trips else "")
    assert decision_for(other).outcome == "act"


@pytest.mark.parametrize("kind", [BreakerType.DAILY_LOSS, BreakerType.VOLATILITY])
def test_exits_still_flow_while_a_breaker_blocks_entries(pool, session_now, kind):
    stopped, deferred = held_flat(pool, session_now, count=2)
    flat_entity("NEW", session_now, sector="Retail")
    later = session_now + timedelta(minutes=30)
    pool_breaker(pool, kind, later - timedelta(minutes=5))
    mark(stopped.entity_id, later - timedelta(minutes=1), "95")

    monitor = run_risk_threshold_monitor(pool.pk, later, dispatch=False)
    defer = factories.make_recommendation(deferred.entity_id, later, action="defer")
    entry = factories.make_recommendation("NEW", later, confidence="0.95")
    run_decision_cycle(pool.pk, later, dispatch=False)
    drain_queued_orders(pool, later)

    assert len(monitor.order_ids) == 1
    assert decision_for(entry).skip_reason == "circuit_breaker_active"
    assert decision_for(defer).outcome == "defer"
    stopped.refresh_from_db()
    deferred.refresh_from_db()
    assert (stopped.status, stopped.close_reason) == ("closed", "risk_threshold")
    assert (deferred.status, deferred.close_reason) == ("closed", "exit_signal")
    assert not Commitment.objects.filter(entity_id="NEW").exists()


# --- performance loop -------------------------------------------------------------------------


def close_by_defer(pool: Pool, now: datetime, symbol: str, value: str) -> Commitment:
    """Exit ``symbol`` at ``value`` through a defer decision and the paper broker."""
    mark(symbol, now - timedelta(minutes=1), value)
    factories.make_recommendation(symbol, now, action="defer")
    run_decision_cycle(pool.pk, now, dispatch=False)
    drain_queued_orders(pool, now)
    commitment = Commitment.objects.get(pool=pool, entity_id=symbol)
    assert commitment.status == "closed"
    return commitment


def test_a_realized_gain_siphons_twenty_percent_into_the_reserve_once(pool, session_now):
    held_flat(pool, session_now)
    later = session_now + timedelta(minutes=30)
    closed = close_by_defer(pool, later, "H0", "103")
    assert closed.realized_gain == 3 * sells(pool).get().quantity  # 3 per unit

    first = run_performance_loop(pool.pk, later + timedelta(minutes=1), dispatch=False)
    run_performance_loop(pool.pk, later + timedelta(minutes=6), dispatch=False)

    entry = ReserveLedgerEntry.objects.get(pool=pool)
    amount = closed.realized_gain * D("0.2")
    assert (entry.trigger, entry.amount, entry.balance_after) == ("profit_siphon", amount, amount)
    assert (entry.entity_id, entry.commitment_id) == ("H0", closed.pk)
    assert Pool.objects.get(pk=pool.pk).reserve_balance == amount
    assert first.events == [f"siphoned {entry.amount} from H0"]
    closed.refresh_from_db()
    assert closed.siphoned


def test_a_loss_siphons_nothing(pool, session_now):
    held_flat(pool, session_now)
    later = session_now + timedelta(minutes=30)
    closed = close_by_defer(pool, later, "H0", "97")
    assert closed.realized_gain < 0

    run_performance_loop(pool.pk, later + timedelta(minutes=1), dispatch=False)

    assert not ReserveLedgerEntry.objects.exists()
    assert Pool.objects.get(pk=pool.pk).reserve_balance == 0
    closed.refresh_from_db()
    assert closed.siphoned


def test_one_pool_snapshot_per_session(pool, session_now):
    run_performance_loop(pool.pk, session_now, dispatch=False)
    run_performance_loop(pool.pk, session_now + timedelta(hours=1), dispatch=False)

    (snapshot,) = PoolSnapshot.objects.filter(pool=pool)
    assert snapshot.session == date(2026, 11, 18)
    assert snapshot.taken_at == session_now + timedelta(hours=1)

    next_session = datetime(2026, 11, 19, 16, 0, tzinfo=UTC)
    run_performance_loop(pool.pk, next_session, dispatch=False)
    # Before the next open the run still belongs to the session of the 19th.
    pre_open = datetime(2026, 11, 20, 13, 0, tzinfo=UTC)
    run_performance_loop(pool.pk, pre_open, dispatch=False)

    rows = list(PoolSnapshot.objects.filter(pool=pool).order_by("session"))
    assert [r.session for r in rows] == [date(2026, 11, 18), date(2026, 11, 19)]
    assert rows[1].taken_at == pre_open
    assert rows[1].total_value == D("100000")


@pytest.mark.parametrize(
    ("value", "trips"),
    [
        ("91", True),  # −5 400 on a total of 94 600: 5.7 %
        ("95", False),  # −3 000 on 97 000: 3.1 %
    ],
)
def test_daily_loss_breaker_trips_above_five_percent_of_total_value(
    pool, session_now, value, trips
):
    flat_entity("BIG", session_now)
    hold_directly(pool, "BIG", "600", "100", session_now - timedelta(days=1))
    mark("BIG", session_now - timedelta(minutes=1), value)

    result = run_performance_loop(pool.pk, session_now, dispatch=False)

    snapshot = PoolSnapshot.objects.get(pool=pool)
    loss = 600 * (D(value) - 100)
    assert snapshot.daily_gain == loss
    events = list(CircuitBreakerEvent.objects.filter(pool=pool, trigger_type="daily_loss"))
    assert len(events) == (1 if trips else 0)
    assert any(e.startswith("daily-loss breaker") for e in result.events) is trips
    if trips:
        assert D(events[0].figures["daily_gain"]) == loss
        assert D(events[0].figures["total_value"]) == snapshot.total_value
        assert events[0].expires_at == session_now + timedelta(hours=2)


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 11, 18, 16, 0, tzinfo=UTC),  # 11:00 ET, during the session
        datetime(2026, 11, 18, 21, 30, tzinfo=UTC),  # 16:30 ET, after the close
    ],
)
def test_an_older_loss_is_not_todays_loss(pool, now):
    """Down 9 % since entry, all of it before the 18th: the 18th itself is flat at 91."""
    factories.add_bars("OLD", now, closes=[100.0] * 15 + [91.0] * 5)
    hold_directly(pool, "OLD", "600", "100", datetime(2026, 10, 30, 15, 0, tzinfo=UTC))
    mark("OLD", datetime(2026, 11, 18, 15, 59, tzinfo=UTC), "91")

    run_performance_loop(pool.pk, now, dispatch=False)

    assert PoolSnapshot.objects.get(pool=pool).daily_gain == 0
    assert not CircuitBreakerEvent.objects.filter(trigger_type="daily_loss").exists()


@pytest.mark.parametrize(
    ("peak", "liquidates"),
    [
        ("140000", True),  # 100 000 now: 28.6 % below the peak
        ("130000", False),  # 23.1 %
    ],
)
def test_emergency_liquidation_releases_the_reserve_above_the_decline_limit(
    pool, session_now, peak, liquidates
):
    Pool.objects.filter(pk=pool.pk).update(reserve_balance=D("5000"))
    pool.refresh_from_db()
    for day, total in [(date(2026, 11, 13), "120000"), (date(2026, 11, 16), peak)]:
        add_pool_snapshot(pool, day, total)
    add_pool_snapshot(pool, date(2026, 11, 17), "110000")

    result = run_performance_loop(pool.pk, session_now, dispatch=False)

    pool.refresh_from_db()
    snapshot = PoolSnapshot.objects.get(pool=pool, session=date(2026, 11, 18))
    assert snapshot.total_value == D("100000")
    if liquidates:
        entry = ReserveLedgerEntry.objects.get(pool=pool)
        assert entry.trigger == "emergency_liquidation"
        assert (entry.amount, entry.balance_after) == (D("-5000"), D("0"))
        assert pool.reserve_balance == 0
        assert "emergency liquidation released 5000.0000" in result.events
    else:
        assert not ReserveLedgerEntry.objects.exists()
        assert pool.reserve_balance == D("5000")
    assert snapshot.reserve_balance == pool.reserve_balance
    assert snapshot.active_pool == snapshot.total_value - pool.reserve_balance
    valuation = pool_as_of(pool, session_now)
    assert valuation.active_pool == valuation.total_value - pool.reserve_balance
    assert pool.cash == D("100000")  # the reserve is an earmark on cash: nothing moves


# --- risk tier scheduler ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "ran"),
    [
        (datetime(2026, 11, 18, 21, 0, tzinfo=UTC), True),  # 16:00 ET
        (datetime(2026, 11, 18, 21, 5, tzinfo=UTC), True),  # 16:05 ET, the second cron slot
        (datetime(2026, 11, 18, 20, 59, tzinfo=UTC), False),  # 15:59 ET
        (datetime(2026, 11, 18, 18, 0, tzinfo=UTC), False),  # 13:00 ET on a normal day
        (datetime(2026, 11, 27, 18, 0, tzinfo=UTC), True),  # 13:00 ET, early close
        (datetime(2026, 11, 27, 17, 59, tzinfo=UTC), False),  # 12:59 ET, early close
        (datetime(2026, 11, 26, 21, 0, tzinfo=UTC), False),  # Thanksgiving
        (datetime(2026, 11, 21, 21, 0, tzinfo=UTC), False),  # Saturday
    ],
)
def test_tier_scheduler_runs_at_the_session_close(pool, now, ran):
    result = run_risk_tier_scheduler(pool.pk, now)

    pool.refresh_from_db()
    assert result.ran is ran
    assert pool.last_tier_evaluation == (now.astimezone(factories.NEW_YORK).date() if ran else None)
    assert PoolSnapshot.objects.filter(pool=pool).exists() is ran


def test_tier_scheduler_without_a_change_writes_no_history(pool):
    close = datetime(2026, 11, 18, 21, 0, tzinfo=UTC)

    result = run_risk_tier_scheduler(pool.pk, close)

    pool.refresh_from_db()
    assert result.detail.startswith("hold")
    assert (pool.risk_tier, pool.last_tier_evaluation) == ("moderate", date(2026, 11, 18))
    assert list(RiskTierHistory.objects.filter(pool=pool).values_list("trigger", flat=True)) == [
        "initial"
    ]


@pytest.mark.parametrize(
    ("exit_value", "min_closed", "tier", "skip_reason"),
    [
        ("103", 1, "moderate", ""),  # a win: hold, a 0.70 act passes moderate's 0.55
        # One losing close is a 0 % success rate on a sample of one: no evidence by default.
        ("97", 5, "moderate", ""),
        # With one close accepted as evidence, the 0 % success rate downgrades.
        ("97", 1, "conservative", "insufficient_confidence"),
    ],
)
def test_tier_scheduler_downgrade_applies_from_the_next_cycle(
    pool, session_now, exit_value, min_closed, tier, skip_reason
):
    EngineConfig.objects.filter(pool=pool).update(min_closed_for_success_rate=min_closed)
    held_flat(pool, session_now)
    close_by_defer(pool, session_now + timedelta(minutes=30), "H0", exit_value)
    close = datetime(2026, 11, 18, 21, 0, tzinfo=UTC)

    first = run_risk_tier_scheduler(pool.pk, close)
    second = run_risk_tier_scheduler(pool.pk, close + timedelta(minutes=5))

    assert first.ran and not second.ran
    assert second.detail == "already evaluated at the close of 2026-11-18"
    pool.refresh_from_db()
    assert pool.risk_tier == tier
    automatic = list(RiskTierHistory.objects.filter(pool=pool, trigger="auto_adjustment"))
    if tier == "moderate":
        assert automatic == []
        if exit_value == "97":
            assert "fewer than 5: no success rate evidence" in first.detail
    else:
        (row,) = automatic
        assert (row.previous_tier, row.new_tier, row.changed_at) == ("moderate", tier, close)
        assert row.metrics["success_rate"] == "0"
        assert "success rate" in row.reason

    next_day = datetime(2026, 11, 19, 16, 0, tzinfo=UTC)
    flat_entity("NEXT", next_day, sector="Energy")
    rec = factories.make_recommendation("NEXT", next_day, confidence="0.70")
    run_decision_cycle(pool.pk, next_day, dispatch=False)

    decision = decision_for(rec)
    assert (decision.skip_reason, decision.risk_tier) == (skip_reason, tier)


# --- set_risk_tier ----------------------------------------------------------------------------


def test_set_risk_tier_records_a_manual_change_that_applies_next_cycle(pool, session_now):
    result = set_risk_tier(
        pool.name, "conservative", actor="ops", reason="review after losses", now=session_now
    )

    assert result.changed
    row = RiskTierHistory.objects.get(pool=pool, trigger="manual")
    assert (row.previous_tier, row.new_tier, row.actor, row.reason, row.changed_at) == (
        "moderate",
        "conservative",
        "ops",
        "review after losses",
        session_now,
    )
    flat_entity("E0", session_now)
    rec = factories.make_recommendation("E0", session_now, confidence="0.70")
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    assert decision_for(rec).skip_reason == "insufficient_confidence"


def test_set_risk_tier_to_the_current_tier_changes_nothing(pool, session_now):
    assert not set_risk_tier(
        pool.name, "moderate", actor="ops", reason="x", now=session_now
    ).changed
    assert not RiskTierHistory.objects.filter(pool=pool, trigger="manual").exists()


@pytest.mark.parametrize(("tier", "reason"), [("conservative", ""), ("conservative", "  ")])
def test_set_risk_tier_needs_a_reason(pool, session_now, tier, reason):
    with pytest.raises(ActionError, match="reason is required"):
        set_risk_tier(pool.name, tier, actor="ops", reason=reason, now=session_now)
    pool.refresh_from_db()
    assert pool.risk_tier == "moderate"
    assert not RiskTierHistory.objects.filter(pool=pool, trigger="manual").exists()


def test_set_risk_tier_refuses_an_unknown_tier(pool, session_now):
    with pytest.raises(ActionError, match="unknown tier"):
        set_risk_tier(pool.name, "reckless", actor="ops", reason="x", now=session_now)


# --- rebalancer -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "due", "why"),
    [
        (datetime(2026, 11, 23, 14, 45, tzinfo=UTC), True, ""),  # Monday 09:45 ET
        (datetime(2026, 11, 23, 14, 44, tzinfo=UTC), False, "before open + 15 minutes"),
        (datetime(2026, 11, 23, 20, 59, tzinfo=UTC), True, ""),  # Monday 15:59 ET
        (datetime(2026, 11, 23, 21, 0, tzinfo=UTC), False, "after the close"),
        (datetime(2026, 11, 24, 14, 45, tzinfo=UTC), False, "not the first session of the week"),
        (datetime(2026, 1, 19, 14, 45, tzinfo=UTC), False, "2026-01-19 is not a session"),  # MLK
        (datetime(2026, 1, 20, 14, 45, tzinfo=UTC), True, ""),  # Tuesday after the holiday
        (datetime(2026, 1, 20, 14, 44, tzinfo=UTC), False, "before open + 15 minutes"),
    ],
)
def test_rebalance_is_due_fifteen_minutes_into_the_first_session_of_the_week(now, due, why):
    assert rebalance_due(get_market_calendar(now), now)[:2] == (due, why)


def test_rebalancer_does_not_run_when_not_due(pool):
    tuesday = datetime(2026, 11, 24, 14, 45, tzinfo=UTC)

    result = run_rebalancer(pool.pk, tuesday, dispatch=False)

    pool.refresh_from_db()
    assert (result.ran, result.detail) == (False, "not the first session of the week")
    assert pool.last_rebalance_session is None


FRIDAY = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)
MONDAY_0945 = datetime(2026, 11, 23, 14, 45, tzinfo=UTC)


def oversized_commitment(pool: Pool) -> Commitment:
    """A commitment at the 10 % limit on Friday whose value rose 10 % by the close.

    A wide range (ATR 10) keeps the gain target at 130, well above the new value.
    """
    flat_entity("BIG", FRIDAY, spread=10.0)
    (commitment,) = open_commitments(pool, FRIDAY, ["BIG"], confidence="0.95").values()
    assert commitment.units * commitment.entry_value == D("10000")  # the tier maximum
    mark("BIG", get_market_calendar(FRIDAY).session_close(FRIDAY.date()), "110")
    return commitment


@pytest.mark.parametrize(
    ("reserve", "expected"),
    [
        # Total 101 000: the 11 000 commitment is 900 over a 10 100 limit → 9 units of 110.
        ("0", 9),
        # A 10 000 reserve leaves an active pool of 91 000: 1 900 over 9 100 → 18 units.
        ("10000", 18),
    ],
)
def test_rebalancer_trims_an_oversized_commitment_by_whole_units(db, reserve, expected):
    pool = factories.make_pool(now=FRIDAY)
    commitment = oversized_commitment(pool)
    units = commitment.units
    Pool.objects.filter(pk=pool.pk).update(reserve_balance=D(reserve))
    active_pool = Pool.objects.get(pk=pool.pk).cash + units * 110 - D(reserve)
    limit = D("0.10") * active_pool
    assert expected == math.ceil((units * 110 - limit) / 110)

    result = run_rebalancer(pool.pk, MONDAY_0945, dispatch=False)

    (order,) = sells(pool)
    assert result.order_ids == [order.pk]
    assert (order.reason, order.status, order.quantity) == ("rebalance", "queued", expected)
    assert order.quantity == order.quantity.to_integral_value() and 0 < order.quantity < units

    drain_queued_orders(pool, MONDAY_0945)

    commitment.refresh_from_db()
    assert commitment.status == "open" and commitment.units == units - expected
    assert commitment.units * 110 <= limit
    assert commitment.realized_gain == expected * 10
    order.refresh_from_db()
    assert order.status == "filled"


def test_rebalancer_skips_while_a_breaker_is_in_force(db):
    pool = factories.make_pool(now=FRIDAY)
    oversized_commitment(pool)
    pool_breaker(pool, BreakerType.VOLATILITY, MONDAY_0945 - timedelta(minutes=10))

    result = run_rebalancer(pool.pk, MONDAY_0945, dispatch=False)

    assert result.detail == "skipped: breaker(s) in force: volatility"
    assert result.order_ids == [] and not sells(pool).exists()
    pool.refresh_from_db()
    assert pool.last_rebalance_session == date(2026, 11, 23)


def test_rebalancer_runs_once_per_session(db):
    pool = factories.make_pool(now=FRIDAY)
    oversized_commitment(pool)

    first = run_rebalancer(pool.pk, MONDAY_0945, dispatch=False)
    second = run_rebalancer(pool.pk, MONDAY_0945 + timedelta(minutes=5), dispatch=False)

    assert first.ran and len(first.order_ids) == 1
    assert (second.ran, second.detail) == (False, "already ran in the session of 2026-11-23")
    assert sells(pool).count() == 1


# --- query counts -----------------------------------------------------------------------------


def _queries(run) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        run()
    return len(ctx.captured_queries)


@pytest.mark.parametrize("loop", ["monitor", "performance"])
def test_loop_queries_do_not_grow_with_commitments(db, session_now, loop):
    """Same number of queries for 2 and 6 open commitments, with levels updated, exits
    created and closed commitments siphoned (batched writes, no query per commitment)."""

    def queries_for(count: int, prefix: str) -> int:
        pool = factories.make_pool(now=session_now, name=f"q-{loop}-{prefix}")
        held = held_flat(pool, session_now, count=count, prefix=prefix)
        later = session_now + timedelta(hours=1)
        # One crossing in both cases: three would also trip (and write) a volatility breaker.
        mark(held[0].entity_id, later, "95")
        if loop == "monitor":
            return _queries(lambda: run_risk_threshold_monitor(pool.pk, later, dispatch=False))
        for commitment in held:  # every commitment closed at a gain, to be siphoned
            close_by_defer(pool, later, commitment.entity_id, "101")
        return _queries(lambda: run_performance_loop(pool.pk, later, dispatch=False))

    small = queries_for(2, "S")
    # The first pool's recommendations must not become the second pool's candidates.
    Recommendation.objects.update(generated_at=session_now - timedelta(days=1))
    assert small == queries_for(6, "L")
