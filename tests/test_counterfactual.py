"""What each gate saved or cost, the pure part (``decisions.counterfactual``): hand-made paths
(a stop hit, a target hit, a trailing stop, a defer, still open, levels that wait for an ATR,
not sized, no value), the size with each gate removed, the ATR each step reads, and the sums
per reason and per period. Every expected number is computed by hand in the comments."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest

from decisions.counterfactual import (
    AtrWindows,
    ExitReason,
    KeptOut,
    NoValue,
    Observation,
    Snapshot,
    atr_before,
    follow,
    monitor_path,
    period_start,
    signed_money,
    size_without_gate,
    summarize,
)
from decisions.sizing import SizingConfig, SizingInput, size_commitment
from decisions.vocabulary import SkipReason
from portfolio.tiers import TierParams

#: The moderate tier: stop 2.0 ATR below the entry, target 1.5 × the risk above it.
MODERATE = TierParams(
    name="moderate",
    min_confidence=D("0.55"),
    max_position_pct=D("0.10"),
    stop_loss_atr_multiplier=D("2.0"),
    reward_risk_ratio=D("1.5"),
    max_sector_pct=D("0.30"),
    max_portfolio_heat=D("0.20"),
)
#: Monday 2026-11-16, 10:00 New York (15:00 UTC).
MONDAY = datetime(2026, 11, 16, 15, 0, tzinfo=UTC)


def kept(
    entry: str,
    units: str,
    path: list[tuple[int, str, str | None]],
    *,
    atr: str | None,
    defers: tuple[int, ...] = (),
    reason: str = SkipReason.CORRELATION_TOO_HIGH,
    decided_at: datetime = MONDAY,
    rec: str = "rec",
) -> KeptOut:
    """A kept-out commitment; the path is (hours after the decision, value, ATR)."""
    return KeptOut(
        recommendation_id=rec,
        entity="AAA",
        skip_reason=reason,
        decided_at=decided_at,
        entry_value=D(entry),
        units=D(units),
        tier=MODERATE,
        entry_atr=D(atr) if atr is not None else None,
        path=tuple(
            Observation(decided_at + timedelta(hours=h), D(v), D(a) if a is not None else None)
            for h, v, a in path
        ),
        defers=tuple(decided_at + timedelta(hours=h) for h in defers),
    )


# --- the path ---------------------------------------------------------------------------------


def test_a_stop_hit_exits_at_the_observed_value():
    # stop = 100 − 2 × 2.0 = 96, target = 100 + 4 × 1.5 = 106; 95.5 ≤ 96 exits.
    candidate = kept("100", "10", [(1, "99", "2"), (25, "95.5", "2"), (49, "90", "2")], atr="2")

    outcome = follow(candidate)

    assert outcome.exit_reason == ExitReason.RISK_THRESHOLD
    assert outcome.exit_at == MONDAY + timedelta(hours=25)
    assert outcome.exit_value == D("95.5")
    assert outcome.result == D("-45.00")  # 10 × (95.5 − 100)


def test_a_target_hit_exits_even_once_trailing():
    # stop 50 − 2 = 48, target 50 + 2 × 1.5 = 53. At 52.9 the value is 97 % of the way: the
    # stop trails to 52.9 − 2 = 50.9; 53.2 then reaches the target.
    candidate = kept("50", "4", [(1, "51", "1"), (2, "52.9", "1"), (3, "53.2", "1")], atr="1")

    outcome = follow(candidate)

    assert outcome.exit_reason == ExitReason.GAIN_TARGET
    assert outcome.exit_value == D("53.2")
    assert outcome.result == D("12.80")  # 4 × 3.2
    assert outcome.levels.trailing_active


def test_a_trailing_stop_exits_below_the_high_water_mark():
    # stop 96, target 106. 104 is 4/6 of the way: trailing, stop 104 − 4 = 100; 105.5 lifts it
    # to 101.5; 101 is at or below it.
    candidate = kept("100", "10", [(1, "104", "2"), (2, "105.5", "2"), (3, "101", "2")], atr="2")

    outcome = follow(candidate)

    assert outcome.exit_reason == ExitReason.TRAILING
    assert outcome.exit_at == MONDAY + timedelta(hours=3)
    assert outcome.exit_value == D("101")
    assert outcome.result == D("10.00")  # 10 × 1


def test_a_later_defer_exits_at_the_last_value_seen():
    # stop 19, target 21.5; the defer at +2 h exits at the +1 h value 20.4.
    candidate = kept(
        "20", "100", [(1, "20.4", "0.5"), (3, "20.8", "0.5")], atr="0.5", defers=(2, 5)
    )

    outcome = follow(candidate)

    assert outcome.exit_reason == ExitReason.DEFER
    assert outcome.exit_at == MONDAY + timedelta(hours=2)
    assert outcome.exit_value == D("20.4")
    assert outcome.result == D("40.00")  # 100 × 0.4


def test_a_defer_before_any_observation_exits_at_the_entry():
    candidate = kept("20", "100", [(3, "25", "0.5")], atr="0.5", defers=(1,))

    outcome = follow(candidate)

    assert (outcome.exit_reason, outcome.exit_value, outcome.result) == (
        ExitReason.DEFER,
        D("20"),
        D("0"),
    )


def test_a_defer_before_the_decision_does_not_count():
    candidate = kept("20", "100", [(3, "20.5", "0.5")], atr="0.5", defers=(-1,))

    assert follow(candidate).exit_reason == ExitReason.STILL_OPEN


def test_still_open_is_marked_at_the_last_value():
    # stop 28, target 33: neither reached.
    candidate = kept("30", "3", [(1, "30.5", "1"), (26, "29.2", "1")], atr="1")

    outcome = follow(candidate)

    assert outcome.exit_reason == ExitReason.STILL_OPEN
    assert outcome.exit_at == MONDAY + timedelta(hours=26)
    assert outcome.result == D("-2.40")  # 3 × (29.2 − 30)


def test_without_an_atr_at_entry_the_levels_wait_for_the_first_one():
    # No levels until +2 h: stop 10 − 0.8 = 9.2, target 10 + 1.2 = 11.2 (no crossing judged at
    # +2 h, as the monitor sets a commitment's first levels); 9.1 crosses the stop at +3 h.
    candidate = kept("10", "7", [(1, "8", None), (2, "9.0", "0.4"), (3, "9.1", "0.4")], atr=None)

    outcome = follow(candidate)

    assert outcome.exit_reason == ExitReason.RISK_THRESHOLD
    assert outcome.exit_at == MONDAY + timedelta(hours=3)
    assert outcome.result == D("-6.30")  # 7 × (9.1 − 10)
    assert outcome.levels.risk_threshold == D("9.2")


def test_a_crossing_is_judged_by_the_levels_before_the_observation():
    # stop 96. The observation at 95 also brings an ATR of 4 (re-evaluation would move the
    # stop down to 92, but a stop never loosens); the crossing is judged against 96.
    candidate = kept("100", "1", [(1, "95", "4")], atr="2")

    outcome = follow(candidate)

    assert outcome.exit_reason == ExitReason.RISK_THRESHOLD
    assert outcome.levels.risk_threshold == D("96")
    assert outcome.levels.gain_target == D("112")  # 100 + 8 × 1.5: the target follows the ATR


def test_zero_units_is_not_sized_and_makes_nothing():
    outcome = follow(kept("100", "0", [(1, "50", "2")], atr="2"))

    assert (outcome.exit_reason, outcome.result) == (ExitReason.NOT_SIZED, D("0"))


# --- the sums ---------------------------------------------------------------------------------


def day(offset: int, hour_utc: int = 15) -> datetime:
    return MONDAY.replace(hour=hour_utc) + timedelta(days=offset)


@pytest.fixture
def outcomes():
    ic, corr = SkipReason.INSUFFICIENT_CONFIDENCE, SkipReason.CORRELATION_TOO_HIGH
    paths = [
        # −45.00 (stop), correlation, Monday 16th
        kept("100", "10", [(1, "95.5", "2")], atr="2", reason=corr, decided_at=day(0), rec="a"),
        # +12.80 (target), confidence, Monday 16th
        kept(
            "50",
            "4",
            [(1, "51", "1"), (2, "52.9", "1"), (3, "53.2", "1")],
            atr="1",
            reason=ic,
            decided_at=day(0, 16),
            rec="b",
        ),
        # +10.00 (trailing), confidence, Wednesday 18th
        kept(
            "100",
            "10",
            [(1, "104", "2"), (2, "105.5", "2"), (3, "101", "2")],
            atr="2",
            reason=ic,
            decided_at=day(2),
            rec="c",
        ),
        # +40.00 (defer), correlation, Monday 23rd
        kept(
            "20",
            "100",
            [(1, "20.4", "0.5")],
            atr="0.5",
            defers=(2,),
            reason=corr,
            decided_at=day(7),
            rec="d",
        ),
        # −2.40 (still open), max commitments, Monday 23rd
        kept(
            "30",
            "3",
            [(1, "29.2", "1")],
            atr="1",
            reason=SkipReason.MAX_COMMITMENTS_REACHED,
            decided_at=day(7, 17),
            rec="e",
        ),
        # 0 (not sized), confidence, Tuesday 24th
        kept("30", "0", [], atr="1", reason=ic, decided_at=day(8), rec="f"),
    ]
    return [follow(p) for p in paths]


NO_VALUE = (
    NoValue("g", SkipReason.INSUFFICIENT_CONFIDENCE, day(2)),
    NoValue("h", SkipReason.NO_CURRENT_VALUE, day(8)),
)


def test_sums_per_reason_largest_result_first(outcomes):
    results = summarize(outcomes, NO_VALUE, start=day(-30), end=day(9), now=day(9))

    assert [(t.reason, t.kept_out, t.result, t.no_value, t.not_sized) for t in results.reasons] == [
        # 12.80 + 10.00 + 0
        ("insufficient_confidence", 3, D("22.80"), 1, 1),
        # −45.00 + 40.00
        ("correlation_too_high", 2, D("-5.00"), 0, 0),
        ("max_commitments_reached", 1, D("-2.40"), 0, 0),
        ("no_current_value", 0, D("0"), 1, 0),
    ]
    assert (results.kept_out, results.result, results.no_value) == (6, D("15.40"), 2)
    assert results.as_json()["correlation_too_high"] == {
        "kept_out": 2,
        "result": "-5.00",
        "no_value": 0,
        "not_sized": 0,
    }


def test_sums_per_week(outcomes):
    results = summarize(outcomes, NO_VALUE, start=day(-30), end=day(9), now=day(9), period="week")

    assert [(p.start, p.kept_out, p.result) for p in results.periods] == [
        (date(2026, 11, 16), 3, D("-22.20")),  # −45.00 + 12.80 + 10.00
        (date(2026, 11, 23), 3, D("37.60")),  # 40.00 − 2.40 + 0
    ]
    first = {t.reason: (t.kept_out, t.result, t.no_value) for t in results.periods[0].reasons}
    assert first == {
        "insufficient_confidence": (2, D("22.80"), 1),
        "correlation_too_high": (1, D("-45.00"), 0),
    }


def test_sums_per_day(outcomes):
    results = summarize(outcomes, NO_VALUE, start=day(-30), end=day(9), now=day(9))

    assert [(p.start, p.kept_out, p.result) for p in results.periods] == [
        (date(2026, 11, 16), 2, D("-32.20")),  # −45.00 + 12.80
        (date(2026, 11, 18), 1, D("10.00")),
        (date(2026, 11, 23), 2, D("37.60")),
        (date(2026, 11, 24), 1, D("0")),
    ]


def test_periods_follow_the_new_york_date():
    # 03:00 UTC on Tuesday is still Monday evening in New York.
    late = datetime(2026, 11, 17, 3, 0, tzinfo=UTC)
    assert period_start(late, "day") == date(2026, 11, 16)
    assert period_start(datetime(2026, 11, 22, 15, tzinfo=UTC), "week") == date(2026, 11, 16)
    with pytest.raises(ValueError):
        period_start(late, "month")


@pytest.mark.parametrize(
    ("value", "text"),
    [("310.2", "+310.20"), ("-1240.504", "−1,240.50"), ("0.001", "0.00"), ("-0.004", "0.00")],
)
def test_a_result_reads_with_its_sign(value, text):
    assert signed_money(D(value)) == text


def test_nothing_kept_out_sums_to_nothing():
    results = summarize([], start=day(-30), end=day(0), now=day(0))
    assert (results.kept_out, results.result, results.reasons, results.periods) == (
        0,
        D("0"),
        (),
        (),
    )


# --- the size with the gate removed -----------------------------------------------------------

CONFIG = SizingConfig(absolute_commitment_cap=D("100000"))
#: confidence 0.80 on the moderate tier: 100,000 × 5 % × 0.80 / 0.55 = 7,272.73, at 50 a unit
#: floor(145.45) = 145 units; three sectors held (no bonus), exposure 145 × 1 × 2 = 290.
BASE = SizingInput(
    confidence=D("0.80"),
    current_value=D("50"),
    atr=D("1"),
    correlation=None,
    sector="Tech",
    sector_value=D("0"),
    held_sectors=frozenset({"Tech", "Energy", "Health"}),
    report_sessions_away=None,
    active_pool=D("100000"),
    available_cash=D("100000"),
    pool_exposure=D("0"),
)


@pytest.mark.parametrize(
    ("reason", "stored"),
    [
        (SkipReason.CORRELATION_TOO_HIGH, {"correlation": 0.9}),
        (SkipReason.SECTOR_LIMIT_REACHED, {"sector_value": D("30000")}),
        (SkipReason.REPORT_TOO_CLOSE, {"report_sessions_away": 1}),
        (SkipReason.POOL_EXPOSURE_LIMIT, {"pool_exposure": D("19900")}),
        (SkipReason.INSUFFICIENT_CASH, {"available_cash": D("40")}),
        (SkipReason.INSUFFICIENT_HISTORY, {"atr": None}),
        (SkipReason.POSITION_LIMIT_REACHED, {"existing_value": D("10000")}),
    ],
)
def test_the_sizer_sizes_again_with_its_gate_removed(reason, stored):
    inputs = replace(BASE, **stored)
    assert size_commitment(inputs, MODERATE, CONFIG).reason == reason  # the gate as stored

    sizing = size_without_gate(inputs, reason, MODERATE, CONFIG)

    assert not sizing.rejected
    assert sizing.units == 145


def test_a_check_before_the_sizer_is_sized_on_the_stored_inputs():
    # 100,000 × 5 % × 0.40 / 0.55 = 3,636.36 → floor(72.73) = 72 units.
    inputs = replace(BASE, confidence=D("0.40"))

    sizing = size_without_gate(inputs, SkipReason.INSUFFICIENT_CONFIDENCE, MODERATE, CONFIG)

    assert sizing.units == 72


def test_another_gate_still_rejects_and_nothing_is_sized():
    inputs = replace(BASE, correlation=0.9, report_sessions_away=0)

    sizing = size_without_gate(inputs, SkipReason.MAX_COMMITMENTS_REACHED, MODERATE, CONFIG)

    assert sizing.rejected and sizing.reason == SkipReason.CORRELATION_TOO_HIGH


def test_zero_units_cannot_be_removed():
    inputs = replace(BASE, current_value=D("8000"))

    sizing = size_without_gate(inputs, SkipReason.ZERO_UNITS, MODERATE, CONFIG)

    assert sizing.rejected and sizing.units == 0


# --- the ATR each step reads ------------------------------------------------------------------


def bar(day_: int, high: str, low: str, close: str, hour_utc: int = 21) -> Snapshot:
    """A snapshot on 2026-11-(16 + day_) at ``hour_utc`` (21:00 UTC is the 16:00 close)."""
    at = datetime(2026, 11, 16 + day_, hour_utc, 0, tzinfo=UTC)
    return Snapshot(at, D(high), D(low), D(close), complete=hour_utc >= 21)


#: Daily bars Mon 16 – Fri 20; true ranges from the 17th: 2, 3, 1, 3.
BARS = [
    bar(0, "11", "9", "10"),
    bar(1, "12", "10", "11"),
    bar(2, "13", "10", "12"),
    bar(3, "12", "11", "11.5"),
    bar(4, "14", "11", "13"),
]


def test_atr_before_reads_the_complete_sessions_only():
    thursday_morning = datetime(2026, 11, 19, 15, 0, tzinfo=UTC)
    # Bars of the 16th–18th (Thursday's own bar is not complete): (2 + 3) / 2 = 2.5.
    assert atr_before(BARS, thursday_morning, 2, 3) == D("2.5")
    # Only two bars from the 17th on: one true range, fewer than period + 1 bars.
    assert atr_before(BARS, thursday_morning, 2, 2) is None
    # After Thursday's close its bar counts: 17th–19th, TRs 3, 1 → 2.
    assert atr_before(BARS, thursday_morning + timedelta(hours=7), 2, 3) == D("2")


def test_the_monitor_path_reads_a_bar_once_its_session_is_complete():
    intraday = bar(4, "12.5", "12.5", "12.5", hour_utc=15)
    decided = datetime(2026, 11, 19, 15, 0, tzinfo=UTC)

    path = monitor_path([*BARS, intraday], decided, AtrWindows(period=2, monitor=4))

    # The 19th's close: bars 16–19, TRs 2, 3, 1: seed 2.5, then (2.5 + 1) / 2 = 1.75.
    # Friday intraday: Friday's bar not complete, the same 1.75.
    # Friday's close: bars 17–20, TRs 3, 1, 3: seed 2, then (2 + 3) / 2 = 2.5.
    assert [(o.at.day, o.at.hour, o.value, o.atr) for o in path] == [
        (19, 21, D("11.5"), D("1.75")),
        (20, 15, D("12.5"), D("1.75")),
        (20, 21, D("13"), D("2.5")),
    ]
