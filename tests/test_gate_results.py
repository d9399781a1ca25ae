"""What each gate saved or cost, against a real database: decisions made by the real engine,
later snapshots and defers, the loader (``decisions.gate_results``), ``manage.py gate_results``
and the pool dashboard's panel; the counterfactual of a real commitment agrees with what the risk
threshold monitor did to it.

The desk of these tests: a moderate pool of 100,000 with nothing held, and flat daily bars up to
Tuesday 2026-11-17, so the ATR of each entity is its bars' range. On Wednesday 2026-11-18 at
11:00 New York one decision cycle (run twice) evaluates:

- AAA at 50 (range 1), confidence 0.40 → ``insufficient_confidence``. With the gate removed:
  100,000 × 5 % × 0.40 / 0.55 = 3,636.36, × 1.2 for a new sector = 4,363.64 → 87 units;
  stop 48, target 53. Wednesday's close 47.5 crosses the stop: 87 × −2.5 = −217.50.
- EEE at 20 (range 0.5), confidence 0.40 → ``insufficient_confidence``: 4,363.64 / 20 → 218
  units; stop 19, target 21.5. Wednesday closes at 20.4; a ``defer`` on Thursday at 10:00 exits
  there: 218 × 0.4 = +87.20.
- GGG at 40 (range 1), confidence 0.40 → ``insufficient_confidence``: 4,363.64 / 40 → 109 units;
  stop 38, target 43. 41 then 40.5: still open, 109 × 0.5 = +54.50.
- BBB at 100 (range 2), confidence 0.80, reporting today → ``performance_report_imminent``.
  Without the report: 100,000 × 5 % × 0.80 / 0.55 = 7,272.73, × 1.2 = 8,727.27 → 87 units;
  stop 96, target 106. 102.5, then 106.5 reaches the target: 87 × 6.5 = +565.50.
- CCC without any snapshot → ``no_current_value``: not followed, counted as no value.

``insufficient_confidence``: 3 kept out, −217.50 + 87.20 + 54.50 = −75.80.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from decisions.counterfactual import (
    AtrWindows,
    ExitReason,
    KeptOut,
    Snapshot,
    atr_before,
    follow,
    monitor_path,
)
from decisions.engine import run_decision_cycle
from decisions.gate_results import WindowError, gate_results, parse_window
from decisions.loops import run_risk_threshold_monitor
from decisions.models import DecisionRecord
from execution.models import Order
from portfolio.admin import gate_results_panel
from portfolio.books import book_fill
from portfolio.market_calendar import get_market_calendar
from portfolio.models import Commitment, MarketSnapshot, Pool, RiskTierConfig
from portfolio.risk_thresholds import ThresholdConfig
from portfolio.selectors import tier_params
from tests import factories

WEDNESDAY = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)  # 11:00 New York
THURSDAY_OPEN = datetime(2026, 11, 19, 15, 0, tzinfo=UTC)  # 10:00 New York
LATER = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)  # Friday, 12:00 New York


def close_bar(symbol: str, day: date, close: str, high: str, low: str) -> None:
    """The daily bar of ``day`` at its session's close."""
    at = get_market_calendar(timezone.now()).session_close(day)
    MarketSnapshot.objects.create(
        entity_id=symbol, as_of=at, open=D(close), high=D(high), low=D(low), close=D(close)
    )


def build_desk(pool: Pool, at: datetime = WEDNESDAY) -> dict[str, str]:
    """The decisions of the module docstring, made by the engine at ``at`` (a session's
    11:00); returns symbol → recommendation id."""
    flat = {"AAA": (50, 1.0, "Tech"), "EEE": (20, 0.5, "Health"), "GGG": (40, 1.0, "Finance")}
    flat["BBB"] = (100, 2.0, "Energy")
    for symbol, (value, spread, sector) in flat.items():
        factories.add_bars(symbol, at, [float(value)] * 40, spread=spread, sector=sector)
    factories.make_entity("CCC", "Utilities")
    factories.add_report("BBB", at.astimezone(factories.NEW_YORK).date())
    recs = {
        symbol: factories.make_recommendation(symbol, at, confidence="0.40").id
        for symbol in ("AAA", "EEE", "GGG")
    }
    recs["BBB"] = factories.make_recommendation("BBB", at, confidence="0.80").id
    recs["CCC"] = factories.make_recommendation("CCC", at, confidence="0.80").id
    run_decision_cycle(pool.pk, at, dispatch=False)
    run_decision_cycle(pool.pk, at + timedelta(minutes=5), dispatch=False)
    return recs


def later_market() -> None:
    """The snapshots and the defer after the decisions (see the module docstring)."""
    wed, thu = date(2026, 11, 18), date(2026, 11, 19)
    close_bar("AAA", wed, "47.5", "50.5", "47")
    close_bar("AAA", thu, "52", "52.5", "51")  # after the exit: ignored
    close_bar("EEE", wed, "20.4", "20.6", "20.2")
    close_bar("EEE", thu, "22", "22.2", "21.8")  # after the defer: ignored
    factories.make_recommendation("EEE", THURSDAY_OPEN, action="defer", age_minutes=0)
    close_bar("GGG", wed, "41", "41.5", "40.5")
    close_bar("GGG", thu, "40.5", "41", "40")
    close_bar("BBB", wed, "102.5", "103.5", "101.5")
    close_bar("BBB", thu, "106.5", "107", "106")


@pytest.fixture
def desk(db):
    pool = factories.make_pool(now=WEDNESDAY, name="gates")
    recs = build_desk(pool)
    later_market()
    # Read again: the factory changed the engine configuration after creating the pool.
    return Pool.objects.get(pk=pool.pk), recs


def whole_day() -> tuple[datetime, datetime]:
    return parse_window("2026-11-18", "2026-11-18", LATER)


def test_the_engine_made_the_decisions_the_desk_describes(desk):
    pool, recs = desk
    records = {
        r.entity_id: r for r in DecisionRecord.objects.filter(pool=pool).order_by("evaluated_at")
    }
    assert {s: (r.skip_reason, r.evaluations) for s, r in records.items()} == {
        "AAA": ("insufficient_confidence", 2),
        "EEE": ("insufficient_confidence", 2),
        "GGG": ("insufficient_confidence", 2),
        "BBB": ("performance_report_imminent", 1),
        "CCC": ("no_current_value", 1),
    }
    assert DecisionRecord.objects.filter(pool=pool).count() == 5
    assert records["AAA"].active_pool == D("100000")
    assert records["AAA"].current_value == D("50")


def test_gate_results_agree_with_the_hand_computation(desk):
    pool, recs = desk
    start, end = whole_day()

    results = gate_results(pool, start, end, LATER)

    by_rec = {o.candidate.recommendation_id: o for o in results.outcomes}
    got = {
        symbol: (by_rec[rec].candidate.units, by_rec[rec].exit_reason, by_rec[rec].result)
        for symbol, rec in recs.items()
        if rec in by_rec
    }
    assert got == {
        "AAA": (D("87"), ExitReason.RISK_THRESHOLD, D("-217.50")),
        "EEE": (D("218"), ExitReason.DEFER, D("87.20")),
        "GGG": (D("109"), ExitReason.STILL_OPEN, D("54.50")),
        "BBB": (D("87"), ExitReason.GAIN_TARGET, D("565.50")),
    }
    assert by_rec[recs["EEE"]].exit_at == THURSDAY_OPEN
    assert [(t.reason, t.kept_out, t.result, t.no_value) for t in results.reasons] == [
        ("performance_report_imminent", 1, D("565.50"), 0),
        ("insufficient_confidence", 3, D("-75.80"), 0),
        ("no_current_value", 0, D("0"), 1),
    ]
    assert (results.kept_out, results.result, results.no_value) == (4, D("489.70"), 1)
    assert [(p.start, p.kept_out, p.result) for p in results.periods] == [
        (date(2026, 11, 18), 4, D("489.70"))
    ]


def test_the_paths_stop_at_now(desk):
    pool, recs = desk
    start, end = whole_day()
    # Thursday 10:00: BBB's target and GGG's second close are still ahead.
    results = gate_results(pool, start, end, THURSDAY_OPEN)

    by_rec = {o.candidate.recommendation_id: o for o in results.outcomes}
    assert (by_rec[recs["BBB"]].exit_reason, by_rec[recs["BBB"]].result) == (
        ExitReason.STILL_OPEN,
        D("217.50"),  # 87 × 2.5 at Wednesday's close
    )
    assert by_rec[recs["GGG"]].result == D("109")  # 109 × 1


def test_the_window_selects_the_decisions(desk):
    pool, _ = desk
    start, end = parse_window("2026-11-19", "2026-11-20", LATER)

    assert gate_results(pool, start, end, LATER).reasons == ()


def test_a_recommendation_acted_on_later_was_not_kept_out(db):
    pool = Pool.objects.get(pk=factories.make_pool(now=WEDNESDAY, name="late-act").pk)
    factories.add_bars("HHH", WEDNESDAY, [100.0] * 40, spread=2.0)
    # Generated at 09:20 New York: skipped before the open at 09:25, acted on at 11:00.
    rec = factories.make_recommendation("HHH", WEDNESDAY, confidence="0.80", age_minutes=100)
    evening = datetime(2026, 11, 18, 23, 0, tzinfo=UTC)
    run_decision_cycle(pool.pk, WEDNESDAY - timedelta(minutes=95), dispatch=False)
    run_decision_cycle(pool.pk, WEDNESDAY, dispatch=False)
    assert sorted(
        DecisionRecord.objects.filter(recommendation_id=rec.id).values_list(
            "outcome", "skip_reason"
        )
    ) == [("act", ""), ("skip", "outside_execution_window")]

    results = gate_results(pool, WEDNESDAY - timedelta(days=1), evening, evening)

    assert results.reasons == ()


def test_a_duplicate_skip_is_no_gate_and_a_repeat_counts_once(desk):
    pool, recs = desk
    first = DecisionRecord.objects.get(recommendation_id=recs["AAA"])
    DecisionRecord.objects.create(
        pool=pool,
        recommendation_id=recs["GGG"],
        entity_id="GGG",
        action="act",
        outcome="skip",
        skip_reason="duplicate_recommendation",
        confidence=D("0.4"),
        current_value=D("40"),
        risk_tier="moderate",
        active_pool=D("100000"),
        reserve_balance=D("0"),
        evaluated_at=WEDNESDAY + timedelta(minutes=10),
        last_evaluated_at=WEDNESDAY + timedelta(minutes=10),
    )
    start, end = whole_day()

    results = gate_results(pool, start, end, LATER)

    assert first.evaluations == 2
    totals = {t.reason: t.kept_out for t in results.reasons}
    assert totals == {
        "insufficient_confidence": 3,
        "performance_report_imminent": 1,
        "no_current_value": 0,
    }


def test_the_queries_do_not_grow_with_the_decisions(desk):
    pool, _ = desk
    start, end = whole_day()
    loaded = Pool.objects.select_related("engine_config").get(pk=pool.pk)
    with CaptureQueriesContext(connection) as few:
        gate_results(loaded, start, end, LATER)
    for i in range(12):
        symbol = f"M{i:02d}"
        factories.add_bars(symbol, WEDNESDAY, [30.0] * 40, spread=1.0)
        factories.make_recommendation(symbol, WEDNESDAY, confidence="0.30")
        factories.make_recommendation(symbol, THURSDAY_OPEN, action="defer", age_minutes=0)
    run_decision_cycle(pool.pk, WEDNESDAY + timedelta(minutes=10), dispatch=False)
    with CaptureQueriesContext(connection) as many:
        results = gate_results(loaded, start, end, LATER)

    assert results.kept_out == 16
    assert len(many) == len(few) <= 4  # decisions, tiers, snapshots, defers


def test_the_counterfactual_of_a_real_commitment_is_what_the_monitor_did(db):
    """A commitment opened for real and watched by the real monitor; the counterfactual of the
    same entry on the same snapshots exits at the same value, for the same reason, with the
    same levels."""
    pool = factories.make_pool(now=WEDNESDAY, name="twin")
    factories.add_bars("TWN", WEDNESDAY, [100.0] * 40, spread=2.0)
    with transaction.atomic():  # a fill at 100, booked as the worker books one
        locked = Pool.objects.select_for_update().get(pk=pool.pk)
        book_fill(
            locked,
            entity_id="TWN",
            side="buy",
            units=D("87"),
            value=D("100"),
            filled_at=WEDNESDAY,
            now=WEDNESDAY,
        )
    commitment = Commitment.objects.get(pool=pool, entity_id="TWN")
    assert (commitment.risk_threshold, commitment.gain_target) == (D("96"), D("106"))
    # Up past half way (trailing), a higher high, then back under the trailed stop.
    marks = [("104", 30), ("105.5", 60), ("103", 90), ("101", 120)]
    for value, minutes in marks:
        at = WEDNESDAY + timedelta(minutes=minutes)
        MarketSnapshot.objects.create(
            entity_id="TWN", as_of=at, open=D(value), high=D(value), low=D(value), close=D(value)
        )
        run_risk_threshold_monitor(pool.pk, at + timedelta(minutes=1), dispatch=False)
    exit_order = Order.objects.get(pool=pool, side="sell")
    commitment.refresh_from_db()

    snapshots = [
        Snapshot(s.as_of, s.high, s.low, s.close, complete=s.as_of.hour == 21)
        for s in MarketSnapshot.objects.filter(entity_id="TWN").order_by("as_of")
    ]
    windows = AtrWindows()
    outcome = follow(
        KeptOut(
            recommendation_id="twin",
            entity="TWN",
            skip_reason="insufficient_confidence",
            decided_at=commitment.opened_at,
            entry_value=commitment.entry_value,
            units=commitment.units,
            tier=tier_params("moderate"),
            entry_atr=atr_before(snapshots, WEDNESDAY, windows.period, windows.entry),
            path=monitor_path(snapshots, commitment.opened_at, windows),
        ),
        ThresholdConfig(),
    )

    assert exit_order.reason == "risk_threshold" and outcome.exit_reason == ExitReason.TRAILING
    assert outcome.exit_value == exit_order.estimated_value == D("101")
    assert outcome.levels.risk_threshold == commitment.risk_threshold == D("101.5")
    assert outcome.levels.highest_value == commitment.highest_value
    assert outcome.result == commitment.units * (D("101") - commitment.entry_value)


# --- the window -------------------------------------------------------------------------------


def test_a_date_window_covers_whole_new_york_days():
    start, end = parse_window("2026-11-18", "2026-11-18", LATER)
    assert start == datetime(2026, 11, 18, 5, 0, tzinfo=UTC)
    assert end == datetime(2026, 11, 19, 5, 0, tzinfo=UTC)
    assert parse_window(None, None, LATER) == (LATER - timedelta(days=30), LATER)
    assert parse_window("2026-11-18T12:00:00", None, LATER)[0] == datetime(
        2026, 11, 18, 12, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("yesterday", None, "from"),
        (None, "2026-13-01", "to"),
        ("2026-11-20", "2026-11-18", "to"),
        (None, "9999-12-31", "to"),
        (None, "0001-01-01", "to"),
    ],
)
def test_a_bad_window_names_its_field(start, end, field):
    with pytest.raises(WindowError) as error:
        parse_window(start, end, LATER)
    assert field in error.value.errors


# --- the command ------------------------------------------------------------------------------


def command(*args: str) -> str:
    out = StringIO()
    call_command("gate_results", *args, stdout=out)
    return out.getvalue()


def test_command_json_is_one_object_keyed_by_reason_on_the_last_line(desk):
    pool, _ = desk
    out = command(
        "--pool",
        pool.name,
        "--from",
        "2026-11-18",
        "--to",
        "2026-11-18",
        "--now",
        LATER.isoformat(),
        "--json",
    )

    assert json.loads(out.strip().splitlines()[-1]) == {
        "insufficient_confidence": {
            "kept_out": 3,
            "result": "-75.80",
            "no_value": 0,
            "not_sized": 0,
        },
        "performance_report_imminent": {
            "kept_out": 1,
            "result": "565.50",
            "no_value": 0,
            "not_sized": 0,
        },
        "no_current_value": {"kept_out": 0, "result": "0.00", "no_value": 1, "not_sized": 0},
    }


def test_command_table_is_sorted_by_the_size_of_the_result(desk):
    pool, _ = desk
    out = command(
        "--pool",
        pool.name,
        "--from",
        "2026-11-18",
        "--to",
        "2026-11-18",
        "--now",
        LATER.isoformat(),
    )

    lines = out.splitlines()
    rows = [
        line.split()
        for line in lines
        if line.split()[:1]
        in (["performance_report_imminent"], ["insufficient_confidence"], ["no_current_value"])
    ]
    assert rows == [
        ["performance_report_imminent", "1", "+565.50", "0"],
        ["insufficient_confidence", "3", "−75.80", "0"],
        ["no_current_value", "0", "0.00", "1"],
    ]
    assert lines[-1].split() == ["total", "4", "+489.70", "1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pool", "nope"], "No pool named 'nope'"),
        (["--pool", "gates", "--from", "18/11/2026"], "--from"),
        (["--pool", "gates", "--from", "2026-11-20", "--to", "2026-11-18"], "--to"),
        (["--pool", "gates", "--now", "2026-11-20"], "--now"),
    ],
)
def test_command_refuses_an_unknown_pool_or_a_bad_date(db, args, message):
    factories.make_pool(now=WEDNESDAY, name="gates")
    with pytest.raises(CommandError, match=message):
        command(*args)


# --- the dashboard panel ----------------------------------------------------------------------


@pytest.fixture
def staff_client(client, db):
    user = User.objects.create_superuser("gates-admin", password="pw-gates-1")
    client.force_login(user)
    return client


@pytest.fixture
def recent_desk(db) -> Pool:
    """The desk's decisions at 11:00 New York two sessions before the wall clock (the
    dashboard reads the last 30 days up to now), and AAA's stop crossed at that day's close."""
    now = timezone.now()
    calendar = get_market_calendar(now)
    day = calendar.previous_session(calendar.previous_session(calendar.current_session(now)))
    pool = factories.make_pool(now=now, name="recent-gates")
    build_desk(pool, calendar.session_open(day) + timedelta(minutes=90))
    close_bar("AAA", day, "47.5", "50.5", "47")
    return pool


def dashboard(pool: Pool) -> str:
    return reverse("admin:portfolio_pool_dashboard", args=[pool.pk])


def test_the_dashboard_shows_what_each_gate_saved_or_cost(staff_client, recent_desk):
    response = staff_client.get(dashboard(recent_desk))

    assert response.status_code == 200
    rows = {row["reason"]: row for row in response.context["gate_results"]["rows"]}
    assert {reason: (row["kept_out"], row["no_value"]) for reason, row in rows.items()} == {
        "insufficient_confidence": (3, 0),
        "performance_report_imminent": (1, 0),
        "no_current_value": (0, 1),
    }
    # AAA's stop: 87 × (47.5 − 50); the others are still open at their entry.
    assert rows["insufficient_confidence"]["result"] == "−217.50"
    page = response.content.decode()
    assert 'id="gate-results"' in page and "What each gate saved or cost" in page
    assert '<td class="num change-down" data-result="−217.50">−217.50</td>' in page, (
        "the loss is shown with its sign and colour"
    )
    assert page.index('data-reason="insufficient_confidence"') < page.index(
        'data-reason="performance_report_imminent"', page.index('id="gate-results"')
    )


def test_a_dashboard_without_skips_says_so(staff_client, db):
    pool = factories.make_pool(now=timezone.now(), name="quiet")

    page = staff_client.get(dashboard(pool)).content.decode()

    assert "No skipped act recommendation in the window." in page


def test_the_dashboard_panel_queries_do_not_grow_with_the_decisions(staff_client, recent_desk):
    staff_client.get(dashboard(recent_desk))  # the content types are cached by the first
    with CaptureQueriesContext(connection) as few:
        staff_client.get(dashboard(recent_desk))
    cycle_at = DecisionRecord.objects.filter(pool=recent_desk).latest("evaluated_at")
    cycle_at = cycle_at.evaluated_at + timedelta(minutes=5)
    for i in range(10):
        factories.add_bars(f"N{i:02d}", cycle_at, [30.0] * 40, spread=1.0)
        factories.make_recommendation(f"N{i:02d}", cycle_at, confidence="0.30")
    run_decision_cycle(recent_desk.pk, cycle_at, dispatch=False)
    with CaptureQueriesContext(connection) as many:
        response = staff_client.get(dashboard(recent_desk))

    assert response.context["gate_results"]["results"].kept_out > 4
    assert len(many) == len(few)
    pool = Pool.objects.select_related("engine_config").get(pk=recent_desk.pk)
    tier_rows = list(RiskTierConfig.objects.all())
    with CaptureQueriesContext(connection) as panel:
        gate_results_panel(pool, timezone.now(), pool.engine_config, tier_rows)
    assert len(panel) == 3  # decisions, snapshots, defers
