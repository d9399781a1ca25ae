"""The decision cycle and the worker against a real database, end to end on the paper broker."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from decisions.engine import run_decision_cycle, run_engine_pass
from decisions.models import DecisionRecord
from execution.models import Order, RiskEvaluation
from execution.worker import process_order
from portfolio.models import CircuitBreakerEvent, Commitment, EngineConfig, PoolRiskConfig
from tests import factories

SECTORS = ["Tech", "Energy", "Health", "Utilities", "Retail", "Finance"]


def _universe(now, count=3, prefix="E"):
    symbols = []
    for i in range(count):
        symbol = f"{prefix}{i:03d}"
        factories.add_bars(symbol, now, sector=SECTORS[i % len(SECTORS)], start=50 + i)
        symbols.append(symbol)
    return symbols


def _decision(rec) -> DecisionRecord:
    return DecisionRecord.objects.get(recommendation=rec)


def test_act_decision_opens_a_commitment_through_the_paper_broker(pool, session_now):
    (symbol,) = _universe(session_now, 1)
    rec = factories.make_recommendation(symbol, session_now, confidence="0.70")

    result = run_engine_pass(pool.pk, session_now)

    decision = _decision(rec)
    assert decision.outcome == "act" and decision.processed
    assert (
        decision.units > 0 and decision.commitment_value == decision.units * decision.current_value
    )
    assert decision.risk_tier == "moderate"
    assert [c["check"] for c in decision.decision_trace["checks"]] == [
        "circuit_breaker",
        "reconciliation",
        "execution_window",
        "confidence",
        "deduplication",
        "declining_commitments",
        "max_commitments",
    ]
    steps = [s["step"] for s in decision.decision_trace["sizing"]["waterfall"]]
    assert steps[0] == "base" and steps[-1] == "units"
    order = Order.objects.get(decision=decision)
    assert order.status == "filled" and result.order_statuses == {"filled": 1}
    assert order.risk_evaluations.get().passed
    commitment = Commitment.objects.get(pool=pool, entity_id=symbol, status="open")
    assert commitment.units == decision.units
    assert commitment.risk_threshold < commitment.entry_value < commitment.gain_target
    pool.refresh_from_db()
    assert pool.cash == Decimal("100000") - order.quantity * order.fill_value


def test_stopped_at_the_window_stays_a_candidate_and_repeats_update_one_record(pool):
    thanksgiving = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
    (symbol,) = _universe(thanksgiving, 1)
    rec = factories.make_recommendation(symbol, thanksgiving)

    run_decision_cycle(pool.pk, thanksgiving, dispatch=False)
    run_decision_cycle(pool.pk, thanksgiving + timedelta(minutes=1), dispatch=False)

    decision = _decision(rec)
    assert decision.skip_reason == "outside_execution_window"
    assert not decision.processed
    assert decision.evaluations == 2
    assert decision.last_evaluated_at == thanksgiving + timedelta(minutes=1)
    assert decision.evaluated_at == thanksgiving


def test_skip_reason_change_adds_a_record_and_processing_ends_candidacy(pool, session_now):
    (symbol,) = _universe(session_now, 1)
    rec = factories.make_recommendation(symbol, session_now)
    CircuitBreakerEvent.objects.create(
        pool=pool,
        trigger_type="daily_loss",
        triggered_at=session_now - timedelta(hours=1),
        expires_at=session_now + timedelta(minutes=30),
    )
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    later = session_now + timedelta(minutes=31)
    run_decision_cycle(pool.pk, later, dispatch=False)
    run_decision_cycle(pool.pk, later + timedelta(minutes=1), dispatch=False)

    records = list(DecisionRecord.objects.filter(recommendation=rec).order_by("id"))
    assert [(r.outcome, r.skip_reason, r.processed) for r in records] == [
        ("skip", "circuit_breaker_active", False),
        ("act", "", True),
    ]
    assert records[0].circuit_breaker_active


def test_candidates_are_read_as_of_now(pool, session_now):
    (symbol,) = _universe(session_now, 1)
    future = factories.make_recommendation(symbol, session_now, age_minutes=-5)
    stale = factories.make_recommendation(symbol, session_now, age_minutes=121)
    fresh = factories.make_recommendation(symbol, session_now, age_minutes=119, action="monitor")

    result = run_decision_cycle(pool.pk, session_now, dispatch=False)

    assert result.candidates == 0
    assert not DecisionRecord.objects.filter(recommendation__in=[future, stale, fresh]).exists()


def test_production_pool_takes_only_production_eligible(db, session_now):
    production = factories.make_pool(now=session_now, mode="production")
    (symbol,) = _universe(session_now, 1)
    factories.make_recommendation(symbol, session_now, mode="simulation_eligible")
    ok = factories.make_recommendation(symbol, session_now, mode="production_eligible")

    result = run_decision_cycle(production.pk, session_now, dispatch=False)

    assert result.candidates == 1
    assert DecisionRecord.objects.get(pool=production).recommendation == ok


def test_in_cycle_deduction_counts_the_first_act_against_the_second(pool, session_now):
    EngineConfig.objects.filter(pool=pool).update(max_active_commitments=1)
    a, b = _universe(session_now, 2)
    first = factories.make_recommendation(a, session_now, confidence="0.90")
    second = factories.make_recommendation(b, session_now, confidence="0.80")

    run_decision_cycle(pool.pk, session_now, dispatch=False)

    assert _decision(first).outcome == "act"
    assert _decision(second).skip_reason == "max_commitments_reached"
    assert _decision(second).processed


def test_pending_orders_count_before_the_worker_fills_them(pool, session_now):
    EngineConfig.objects.filter(pool=pool).update(max_active_commitments=1)
    a, b = _universe(session_now, 2)
    factories.make_recommendation(a, session_now, confidence="0.90")
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    assert Order.objects.get().status == "queued"

    later = factories.make_recommendation(b, session_now, confidence="0.90")
    run_decision_cycle(pool.pk, session_now + timedelta(minutes=1), dispatch=False)

    assert _decision(later).skip_reason == "max_commitments_reached"


def test_defer_exits_the_whole_commitment_with_its_realized_gain(pool, session_now):
    (symbol,) = _universe(session_now, 1)
    factories.make_recommendation(symbol, session_now, confidence="0.90")
    run_engine_pass(pool.pk, session_now)
    commitment = Commitment.objects.get()

    exit_at = session_now + timedelta(hours=1)
    defer = factories.make_recommendation(symbol, exit_at, action="defer", confidence="0.30")
    run_engine_pass(pool.pk, exit_at)

    decision = _decision(defer)
    assert decision.outcome == "defer" and decision.units == commitment.units
    commitment.refresh_from_db()
    assert commitment.status == "closed" and commitment.units == 0
    assert commitment.close_reason == "exit_signal"
    sell = Order.objects.get(decision=decision)
    assert sell.side == "sell" and sell.quantity == decision.units
    assert sell.realized_gain == (sell.fill_value - commitment.entry_value) * sell.quantity
    pool.refresh_from_db()
    assert pool.cash == Decimal("100000") + commitment.realized_gain


def test_defer_without_a_commitment_is_processed_with_its_reason(pool, session_now):
    (symbol,) = _universe(session_now, 1)
    rec = factories.make_recommendation(symbol, session_now, action="defer")
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    assert (_decision(rec).skip_reason, _decision(rec).processed) == ("no_open_commitment", True)


def test_defer_still_flows_while_a_breaker_blocks_entries(pool, session_now):
    a, b = _universe(session_now, 2)
    factories.make_recommendation(a, session_now, confidence="0.90")
    run_engine_pass(pool.pk, session_now)
    later = session_now + timedelta(minutes=5)
    CircuitBreakerEvent.objects.create(
        pool=pool,
        trigger_type="volatility",
        triggered_at=later,
        expires_at=later + timedelta(hours=2),
    )
    entry = factories.make_recommendation(b, later, confidence="0.95")
    exit_ = factories.make_recommendation(a, later, action="defer")

    run_engine_pass(pool.pk, later)

    assert _decision(entry).skip_reason == "circuit_breaker_active"
    assert _decision(exit_).outcome == "defer"
    assert Commitment.objects.get(entity_id=a).status == "closed"


def test_entity_without_a_current_value_is_skipped(pool, session_now):
    factories.make_entity("NOVAL", "Tech")
    rec = factories.make_recommendation("NOVAL", session_now)
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    assert _decision(rec).skip_reason == "no_current_value"


def test_stale_value_is_not_current(pool, session_now):
    old = session_now - timedelta(days=10)
    factories.add_bars("OLD", old, sessions=20)
    rec = factories.make_recommendation("OLD", session_now)
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    assert _decision(rec).skip_reason == "no_current_value"


@pytest.mark.parametrize(
    ("report_day", "reason", "proximity"),
    [
        (date(2026, 11, 19), "performance_report_imminent", "rejected"),  # next session: 1
        (date(2026, 11, 23), "", "reduced"),  # 3 sessions away
        (date(2026, 11, 24), "", "clear"),  # 4 sessions away
    ],
)
def test_report_proximity_from_the_report_calendar(
    pool, session_now, report_day, reason, proximity
):
    (symbol,) = _universe(session_now, 1)
    factories.add_report(symbol, report_day)
    rec = factories.make_recommendation(symbol, session_now)
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    decision = _decision(rec)
    assert decision.skip_reason == reason
    assert decision.report_proximity == proximity


def test_risk_evaluation_is_stored_when_it_rejects(pool, session_now):
    PoolRiskConfig.objects.filter(pool=pool).update(max_order_notional=Decimal("10"))
    (symbol,) = _universe(session_now, 1)
    factories.make_recommendation(symbol, session_now)

    run_engine_pass(pool.pk, session_now)

    order = Order.objects.get()
    assert order.status == "risk_rejected" and "order_notional" in order.status_reason
    evaluation = RiskEvaluation.objects.get(order=order)
    assert not evaluation.passed and evaluation.reasons == ["order_notional"]
    assert not Commitment.objects.exists()


def test_processing_an_order_twice_fills_it_once(pool, session_now):
    (symbol,) = _universe(session_now, 1)
    factories.make_recommendation(symbol, session_now)
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    order = Order.objects.get()

    first = process_order(order.pk, session_now)
    second = process_order(order.pk, session_now)

    assert first.status == "filled" and second.detail == "not claimable"
    assert Commitment.objects.get().units == order.quantity
    assert RiskEvaluation.objects.count() == 1
    pool.refresh_from_db()
    assert pool.cash == Decimal("100000") - order.quantity * Order.objects.get().fill_value


def test_cycle_queries_do_not_grow_with_candidates(session_now, db):
    """Same number of queries for 3 and 25 candidates (25 rows still fit in one SQLite
    INSERT batch; beyond that the bulk insert is split, which is batching, not N+1)."""

    def queries_for(count: int, prefix: str) -> int:
        pool = factories.make_pool(now=session_now)
        EngineConfig.objects.filter(pool=pool).update(max_active_commitments=1000)
        for symbol in _universe(session_now, count, prefix):
            factories.make_recommendation(symbol, session_now)
        # An existing commitment and a pending order take the same paths at any size.
        with CaptureQueriesContext(connection) as ctx:
            result = run_decision_cycle(pool.pk, session_now, dispatch=False)
        assert result.candidates >= count and result.outcomes["act"] > 0
        return len(ctx.captured_queries)

    small = queries_for(3, "S")
    large = queries_for(25, "L")
    assert small == large


def test_orders_are_handed_to_the_worker_only_after_commit(
    pool, session_now, django_capture_on_commit_callbacks
):
    (symbol,) = _universe(session_now, 1)
    factories.make_recommendation(symbol, session_now)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run_decision_cycle(pool.pk, session_now, dispatch=True)
    # The hand-over of the orders, and the configuration version remembered once committed
    # (a version new to the process: portfolio.config_versions.ensure_version).
    assert len(callbacks) == 2
    assert Order.objects.get().status == "queued"


@pytest.mark.parametrize(
    ("now", "reason"),
    [
        (datetime(2026, 11, 27, 17, 59, tzinfo=UTC), ""),  # early close day, 12:59 ET
        (datetime(2026, 11, 27, 18, 0, tzinfo=UTC), "outside_execution_window"),  # 13:00 ET
        (datetime(2026, 11, 21, 16, 0, tzinfo=UTC), "outside_execution_window"),  # Saturday
        (datetime(2026, 11, 26, 16, 0, tzinfo=UTC), "outside_execution_window"),  # Thanksgiving
        (datetime(2026, 11, 24, 14, 29, tzinfo=UTC), "outside_execution_window"),  # 09:29 ET
        (datetime(2026, 11, 24, 14, 30, tzinfo=UTC), ""),  # 09:30 ET
    ],
)
def test_execution_window_follows_the_exchange_calendar(pool, now, reason):
    (symbol,) = _universe(now, 1)
    rec = factories.make_recommendation(symbol, now)
    run_decision_cycle(pool.pk, now, dispatch=False)
    assert _decision(rec).skip_reason == reason
