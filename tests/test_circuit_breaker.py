"""Tests of portfolio.circuit_breaker: the three triggers, cooldowns and activity.

Source, "Circuit Breaker" (daily loss 5 %, single commitment loss 15 %, 3 risk threshold hits in
30 minutes; cooldowns 2 h and 48 h). Pure: no database.
"""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portfolio.circuit_breaker import (
    BreakerConfig,
    BreakerTrigger,
    BreakerType,
    check_daily_loss,
    check_single_position,
    check_volatility,
    compute_cooldown_expiry,
    is_active,
    is_ticker_cooled_down,
)

D = Decimal
NOW = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)
CONFIG = BreakerConfig()


def minutes(*offsets: float) -> list[datetime]:
    """Instants ``offset`` minutes before NOW (negative: after NOW)."""
    return [NOW - timedelta(minutes=m) for m in offsets]


def test_config_defaults_are_the_source_numbers() -> None:
    assert BreakerConfig() == BreakerConfig(
        daily_loss_pct=D("0.05"),
        single_position_loss_pct=D("0.15"),
        stop_loss_hits_threshold=3,
        stop_loss_window_minutes=30,
        volatility_pause_hours=2,
        ticker_cooldown_hours=48,
    )
    with pytest.raises(FrozenInstanceError):
        CONFIG.daily_loss_pct = D("0.5")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("stop_loss_hits_threshold", 0, id="threshold-zero"),
        pytest.param("stop_loss_window_minutes", -1, id="window-negative"),
        pytest.param("volatility_pause_hours", -1, id="pause-negative"),
        pytest.param("ticker_cooldown_hours", -1, id="cooldown-negative"),
    ],
)
def test_config_rejects_meaningless_numbers(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        BreakerConfig(**{field: value})


# --- daily loss -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("daily_gain", "total_value", "trips"),
    [
        pytest.param("-5000", "100000", False, id="exactly-5pct-no-trip"),
        pytest.param("-5000.1", "100000", True, id="5.0001pct-trips"),
        pytest.param("-4999.9", "100000", False, id="4.9999pct-no-trip"),
        pytest.param("-20000", "100000", True, id="20pct-trips"),
        pytest.param("0", "100000", False, id="zero-gain"),
        pytest.param("6000", "100000", False, id="gain-above-5pct-never-trips"),
        pytest.param("-6000", "0", False, id="total-zero"),
        pytest.param("-6000", "-100", False, id="total-negative"),
    ],
)
def test_check_daily_loss_boundaries(daily_gain: str, total_value: str, trips: bool) -> None:
    trigger = check_daily_loss(D(daily_gain), D(total_value), NOW, CONFIG)

    assert (trigger is not None) is trips


def test_check_daily_loss_trigger_records_its_figures() -> None:
    trigger = check_daily_loss(D("-5000.1"), D("100000"), NOW, CONFIG)

    assert trigger == BreakerTrigger(
        type=BreakerType.DAILY_LOSS,
        triggered_at=NOW,
        expires_at=NOW + timedelta(hours=2),
        entity=None,
        figures={
            "daily_gain": "-5000.1",
            "total_value": "100000",
            "loss_ratio": "0.050001",
            "limit": "0.05",
        },
    )
    json.dumps(trigger.figures)


def test_check_daily_loss_uses_the_configured_threshold() -> None:
    config = BreakerConfig(daily_loss_pct=D("0.02"))

    assert check_daily_loss(D("-2000"), D("100000"), NOW, config) is None
    assert check_daily_loss(D("-2001"), D("100000"), NOW, config) is not None


# --- single commitment loss -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "current", "trips"),
    [
        pytest.param("100", "85", False, id="exactly-15pct-no-trip"),
        pytest.param("100", "84.9999", True, id="just-above-15pct-trips"),
        pytest.param("100", "85.0001", False, id="just-below-15pct-no-trip"),
        pytest.param("100", "50", True, id="half-lost"),
        pytest.param("100", "120", False, id="gain"),
        pytest.param("100", "100", False, id="flat"),
        pytest.param("0", "10", False, id="entry-zero"),
    ],
)
def test_check_single_position_boundaries(entry: str, current: str, trips: bool) -> None:
    trigger = check_single_position("AAPL", D(entry), D(current), NOW, CONFIG)

    assert (trigger is not None) is trips


def test_check_single_position_is_entity_specific_with_48h_cooldown() -> None:
    trigger = check_single_position("AAPL", D("200"), D("160"), NOW, CONFIG)

    assert trigger is not None
    assert trigger.type is BreakerType.SINGLE_POSITION
    assert trigger.entity == "AAPL"
    assert trigger.triggered_at == NOW
    assert trigger.expires_at == NOW + timedelta(hours=48)
    assert trigger.figures == {
        "entry_value": "200",
        "current_value": "160",
        "loss_fraction": "0.2",
        "limit": "0.15",
    }
    json.dumps(trigger.figures)


# --- volatility -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offsets", "trips"),
    [
        pytest.param((30, 15, 0), True, id="3-hits-in-exactly-30min-trip"),
        pytest.param((30 + 1 / 60, 15, 0), False, id="3-hits-in-30min-1s-no-trip"),
        pytest.param((29, 10, 1), True, id="3-hits-well-inside"),
        pytest.param((10, 0), False, id="2-hits-never"),
        pytest.param((0,), False, id="1-hit"),
        pytest.param((), False, id="no-hits"),
        pytest.param((90, 25, 10, 0), True, id="4-hits-only-last-3-fit"),
        pytest.param((60, 40, 20, 0), False, id="4-hits-spread-no-3-fit"),
        pytest.param((0, 30, 15), True, id="unsorted-input"),
        pytest.param((15, -5, 10), False, id="hit-after-now-ignored"),
        pytest.param((0, -1, -2), False, id="all-after-now"),
        pytest.param((20, 10, 0, -1), True, id="hit-exactly-at-now-counts"),
    ],
)
def test_check_volatility_window(offsets: tuple[float, ...], trips: bool) -> None:
    trigger = check_volatility(minutes(*offsets), NOW, CONFIG)

    assert (trigger is not None) is trips


def test_check_volatility_trigger_lists_the_run() -> None:
    # Hits at −90, −25, −10, 0 minutes: only the last three fit in 30 minutes.
    trigger = check_volatility(minutes(0, 90, 10, 25), NOW, CONFIG)

    assert trigger is not None
    assert trigger.type is BreakerType.VOLATILITY
    assert trigger.entity is None
    assert trigger.triggered_at == NOW
    assert trigger.expires_at == NOW + timedelta(hours=2)
    assert trigger.figures == {
        "hits": [t.isoformat() for t in minutes(25, 10, 0)],
        "span_seconds": 1500.0,
        "hits_threshold": 3,
        "window_minutes": 30,
        "hits_considered": 4,
    }
    json.dumps(trigger.figures)


def test_check_volatility_reports_the_most_recent_fitting_run() -> None:
    # Two clusters: −120/−115/−110 and −20/−10/0; the later one is reported.
    trigger = check_volatility(minutes(120, 115, 110, 20, 10, 0), NOW, CONFIG)

    assert trigger is not None
    assert trigger.figures["hits"] == [t.isoformat() for t in minutes(20, 10, 0)]


def test_check_volatility_uses_the_configured_threshold_and_window() -> None:
    config = BreakerConfig(stop_loss_hits_threshold=2, stop_loss_window_minutes=5)

    assert check_volatility(minutes(5, 0), NOW, config) is not None
    assert check_volatility(minutes(5 + 1 / 60, 0), NOW, config) is None


@settings(max_examples=200)
@given(
    offsets=st.lists(st.integers(min_value=-600, max_value=600 * 60), max_size=8),
    data=st.data(),
)
def test_check_volatility_is_order_independent(offsets: list[int], data: st.DataObject) -> None:
    hits = [NOW - timedelta(seconds=s) for s in offsets]
    shuffled = data.draw(st.permutations(hits))

    assert check_volatility(shuffled, NOW, CONFIG) == check_volatility(hits, NOW, CONFIG)


# --- cooldowns ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "hours"),
    [
        pytest.param(BreakerType.DAILY_LOSS, 2, id="daily-loss-pause"),
        pytest.param(BreakerType.VOLATILITY, 2, id="volatility-pause"),
        pytest.param(BreakerType.SINGLE_POSITION, 48, id="ticker-cooldown"),
    ],
)
def test_compute_cooldown_expiry(kind: BreakerType, hours: int) -> None:
    assert compute_cooldown_expiry(kind, NOW, CONFIG) == NOW + timedelta(hours=hours)


def test_compute_cooldown_expiry_uses_the_configured_hours() -> None:
    config = BreakerConfig(volatility_pause_hours=3, ticker_cooldown_hours=24)

    assert compute_cooldown_expiry(BreakerType.DAILY_LOSS, NOW, config) == NOW + timedelta(hours=3)
    assert compute_cooldown_expiry(BreakerType.SINGLE_POSITION, NOW, config) == NOW + timedelta(
        hours=24
    )


EXPIRY = NOW + timedelta(hours=2)
SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("expires_at", "now", "cleared_at", "active"),
    [
        pytest.param(EXPIRY, EXPIRY - SECOND, None, True, id="one-second-before-expiry-active"),
        pytest.param(EXPIRY, EXPIRY, None, False, id="at-the-exact-second-inactive"),
        pytest.param(EXPIRY, EXPIRY + SECOND, None, False, id="after-expiry-inactive"),
        pytest.param(None, NOW, None, False, id="no-breaker"),
        pytest.param(EXPIRY, NOW, NOW - SECOND, False, id="cleared-before-now"),
        pytest.param(EXPIRY, NOW, NOW, False, id="cleared-at-now"),
        pytest.param(EXPIRY, NOW, NOW + SECOND, True, id="cleared-later-still-active-now"),
    ],
)
def test_is_active(
    expires_at: datetime | None, now: datetime, cleared_at: datetime | None, active: bool
) -> None:
    assert is_active(expires_at, now, cleared_at) is active


@pytest.mark.parametrize(
    ("now", "cooled_down"),
    [
        pytest.param(EXPIRY - SECOND, False, id="still-cooling-may-not-enter"),
        pytest.param(EXPIRY, True, id="expiry-second-may-enter"),
        pytest.param(EXPIRY + SECOND, True, id="after-expiry-may-enter"),
    ],
)
def test_is_ticker_cooled_down(now: datetime, cooled_down: bool) -> None:
    cooldowns = {"AAPL": EXPIRY}

    assert is_ticker_cooled_down(cooldowns, "AAPL", now) is cooled_down


def test_is_ticker_cooled_down_without_a_cooldown_may_enter() -> None:
    assert is_ticker_cooled_down({"AAPL": EXPIRY}, "MSFT", NOW) is True
    assert is_ticker_cooled_down({}, "AAPL", NOW) is True


def test_single_position_trigger_feeds_the_ticker_cooldown() -> None:
    trigger = check_single_position("AAPL", D("100"), D("80"), NOW, CONFIG)
    assert trigger is not None
    cooldowns = {trigger.entity: trigger.expires_at}

    assert not is_ticker_cooled_down(cooldowns, "AAPL", NOW + timedelta(hours=47, minutes=59))
    assert is_ticker_cooled_down(cooldowns, "AAPL", NOW + timedelta(hours=48))
