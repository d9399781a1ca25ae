"""Tests of decisions.rules: the pre-execution checks, their order, and the in-cycle pool update.

Source, page 6, "Pre-Execution Check Sequence"; DESIGN.md, "The decision cycle". Pure: no database.
"""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decisions.rules import (
    Candidate,
    CheckConfig,
    Evaluation,
    PoolView,
    apply_act,
    check_circuit_breaker,
    check_confidence,
    check_declining_commitments,
    check_duplicate,
    check_execution_window,
    check_max_commitments,
    evaluate_act,
    evaluate_defer,
)
from decisions.sizing import SizingConfig
from tests.test_sizing import AGGRESSIVE, CONSERVATIVE, MODERATE, TIERS

D = Decimal
NOW = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)
CHECK_ORDER = (
    "circuit_breaker",
    "reconciliation",
    "execution_window",
    "confidence",
    "deduplication",
    "declining_commitments",
    "max_commitments",
)
CHECKS = CheckConfig()
SIZING = SizingConfig(absolute_commitment_cap=D("1000000"))


def make_pool(**overrides) -> PoolView:
    """A pool nothing blocks: moderate tier, 100,000 active, three other sectors held."""
    values = {
        "tier": MODERATE,
        "total_value": D("100000"),
        "reserve_balance": D("0"),
        "cash": D("100000"),
        "halted": False,
        "active_breakers": (),
        "breaker_until": None,
        "entity_cooldowns": {},
        "in_execution_window": True,
        "active_commitments": 3,
        "declining_commitments": 0,
        "sector_values": {"energy": D("1000"), "health": D("1000"), "utilities": D("1000")},
        "pool_exposure": D("0"),
        "commitment_values": {"XOM": D("1000"), "PFE": D("1000"), "DUK": D("1000")},
    }
    values.update(overrides)
    return PoolView(**values)


def make_candidate(**overrides) -> Candidate:
    """An ``act`` on AAPL at confidence 0.70, value 10, ATR 0.5, no correlation, no report."""
    values = {
        "recommendation_id": "rec-1",
        "symbol": "AAPL",
        "sector": "tech",
        "action": "act",
        "confidence": D("0.70"),
        "current_value": D("10"),
        "atr": D("0.5"),
    }
    values.update(overrides)
    return Candidate(**values)


def act(candidate: Candidate | None = None, pool: PoolView | None = None) -> Evaluation:
    return evaluate_act(candidate or make_candidate(), pool or make_pool(), CHECKS, SIZING, NOW)


def check_names(evaluation: Evaluation) -> tuple[str, ...]:
    return tuple(check.name for check in evaluation.checks)


# --- each check on its own ----------------------------------------------------------------------


@pytest.mark.parametrize("tier_name", ["conservative", "moderate", "aggressive"])
@pytest.mark.parametrize(
    ("delta", "passed"),
    [
        pytest.param(D("-0.0001"), False, id="just-below-min-fails"),
        pytest.param(D("0"), True, id="exactly-min-passes"),
        pytest.param(D("0.0001"), True, id="just-above-min-passes"),
    ],
)
def test_confidence_gate(tier_name: str, delta: Decimal, passed: bool) -> None:
    tier = TIERS[tier_name]
    result = check_confidence(tier.min_confidence + delta, tier)

    assert result.name == "confidence"
    assert result.passed is passed
    assert result.reason == ("" if passed else "insufficient_confidence")
    assert result.limit == tier.min_confidence


@pytest.mark.parametrize(
    ("tier", "confidence"),
    [
        pytest.param(CONSERVATIVE, D("0.75"), id="conservative-0.75"),
        pytest.param(MODERATE, D("0.55"), id="moderate-0.55"),
        pytest.param(AGGRESSIVE, D("0.40"), id="aggressive-0.40"),
    ],
)
def test_confidence_at_the_tier_minimum_acts(tier, confidence: Decimal) -> None:
    evaluation = act(make_candidate(confidence=confidence), make_pool(tier=tier))

    assert evaluation.outcome == "act"


@pytest.mark.parametrize(
    ("declining", "total", "passed"),
    [
        pytest.param(0, 0, True, id="none-of-none-passes"),
        pytest.param(0, 4, True, id="none-declining-passes"),
        pytest.param(1, 2, True, id="1-of-2-exactly-half-passes"),
        pytest.param(2, 4, True, id="2-of-4-exactly-half-passes"),
        pytest.param(5, 10, True, id="5-of-10-exactly-half-passes"),
        pytest.param(3, 5, False, id="3-of-5-sixty-pct-fails"),
        pytest.param(6, 10, False, id="6-of-10-just-above-half-fails"),
        pytest.param(1, 1, False, id="1-of-1-fails"),
    ],
)
def test_declining_commitments(declining: int, total: int, passed: bool) -> None:
    pool = make_pool(active_commitments=total, declining_commitments=declining)
    result = check_declining_commitments(pool, CHECKS)

    assert result.name == "declining_commitments"
    assert result.passed is passed
    assert result.reason == ("" if passed else "multiple_declining_commitments")
    assert result.observed == f"{declining}/{total}"


@pytest.mark.parametrize(
    ("active", "passed"),
    [
        pytest.param(0, True, id="0-of-10-passes"),
        pytest.param(9, True, id="9-of-10-passes"),
        pytest.param(10, False, id="10-of-10-fails"),
        pytest.param(11, False, id="11-of-10-fails"),
    ],
)
def test_max_commitments(active: int, passed: bool) -> None:
    result = check_max_commitments(make_pool(active_commitments=active), CHECKS)

    assert result.name == "max_commitments"
    assert result.passed is passed
    assert result.reason == ("" if passed else "max_commitments_reached")
    assert (result.observed, result.limit) == (active, 10)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        pytest.param({}, "", id="nothing-active-passes"),
        pytest.param(
            {"active_breakers": ("daily_loss",), "breaker_until": NOW + timedelta(hours=2)},
            "circuit_breaker_active",
            id="breaker-active",
        ),
        pytest.param({"halted": True}, "pool_halted", id="pool-halted"),
        pytest.param(
            {"entity_cooldowns": {"AAPL": NOW + timedelta(hours=48)}},
            "entity_cooldown_active",
            id="cooldown-well-after-now",
        ),
        pytest.param(
            {"entity_cooldowns": {"AAPL": NOW + timedelta(microseconds=1)}},
            "entity_cooldown_active",
            id="cooldown-just-after-now",
        ),
        pytest.param(
            {"entity_cooldowns": {"AAPL": NOW}}, "", id="cooldown-expired-exactly-now-passes"
        ),
        pytest.param(
            {"entity_cooldowns": {"AAPL": NOW - timedelta(microseconds=1)}},
            "",
            id="cooldown-expired-before-now-passes",
        ),
        pytest.param(
            {"entity_cooldowns": {"MSFT": NOW + timedelta(hours=48)}},
            "",
            id="other-entity-cooldown-passes",
        ),
        pytest.param(
            {"active_breakers": ("volatility",), "halted": True},
            "circuit_breaker_active",
            id="breaker-before-halt",
        ),
        pytest.param(
            {"halted": True, "entity_cooldowns": {"AAPL": NOW + timedelta(hours=1)}},
            "pool_halted",
            id="halt-before-cooldown",
        ),
    ],
)
def test_circuit_breaker(overrides, reason: str) -> None:
    result = check_circuit_breaker(make_pool(**overrides), "AAPL", NOW)

    assert result.name == "circuit_breaker"
    assert result.passed is (reason == "")
    assert result.reason == reason


@pytest.mark.parametrize(
    ("in_window", "reason"),
    [
        pytest.param(True, "", id="in-session-passes"),
        pytest.param(False, "outside_execution_window", id="closed-fails"),
    ],
)
def test_execution_window(in_window: bool, reason: str) -> None:
    result = check_execution_window(in_window)

    assert result.name == "execution_window"
    assert result.passed is in_window
    assert result.reason == reason


@pytest.mark.parametrize(
    ("processed", "reason"),
    [
        pytest.param(False, "", id="first-evaluation-passes"),
        pytest.param(True, "duplicate_recommendation", id="already-processed-fails"),
    ],
)
def test_deduplication(processed: bool, reason: str) -> None:
    result = check_duplicate(processed)

    assert result.name == "deduplication"
    assert result.passed is (not processed)
    assert result.reason == reason


# --- evaluate_act: check order ------------------------------------------------------------------

BREAKER = {"active_breakers": ("daily_loss",), "breaker_until": NOW + timedelta(hours=2)}


@pytest.mark.parametrize(
    ("pool_overrides", "candidate_overrides", "reason"),
    [
        pytest.param(
            {**BREAKER, "in_execution_window": False},
            {},
            "circuit_breaker_active",
            id="breaker-and-window-reports-breaker",
        ),
        pytest.param(
            {"halted": True, "in_execution_window": False},
            {},
            "pool_halted",
            id="halt-and-window-reports-halt",
        ),
        pytest.param(
            {"entity_cooldowns": {"AAPL": NOW + timedelta(hours=1)}},
            {"confidence": D("0.1")},
            "entity_cooldown_active",
            id="cooldown-and-confidence-reports-cooldown",
        ),
        pytest.param(
            {"in_execution_window": False},
            {"confidence": D("0.5499")},
            "outside_execution_window",
            id="window-and-confidence-reports-window",
        ),
        pytest.param(
            {},
            {"confidence": D("0.5499"), "already_processed": True},
            "insufficient_confidence",
            id="confidence-and-duplicate-reports-confidence",
        ),
        pytest.param(
            {"active_commitments": 10},
            {"already_processed": True},
            "duplicate_recommendation",
            id="duplicate-and-max-reports-duplicate",
        ),
        pytest.param(
            {"active_commitments": 10, "declining_commitments": 6},
            {},
            "multiple_declining_commitments",
            id="declining-and-max-reports-declining",
        ),
        pytest.param(
            {"active_commitments": 10},
            {"current_value": None},
            "max_commitments_reached",
            id="max-and-no-value-reports-max",
        ),
        pytest.param(
            {}, {"current_value": None, "report_sessions_away": 0}, "no_current_value", id="value"
        ),
    ],
)
def test_first_failing_check_wins(pool_overrides, candidate_overrides, reason: str) -> None:
    evaluation = act(make_candidate(**candidate_overrides), make_pool(**pool_overrides))

    assert evaluation.outcome == "skip"
    assert evaluation.skip_reason == reason
    assert evaluation.checks[-1].reason == reason
    assert all(check.passed for check in evaluation.checks[:-1])


@pytest.mark.parametrize(
    ("pool_overrides", "candidate_overrides", "ran"),
    [
        pytest.param(BREAKER, {}, 1, id="stops-at-circuit-breaker"),
        pytest.param({"reduce_only": frozenset({"AAPL"})}, {}, 2, id="stops-at-reconciliation"),
        pytest.param({"in_execution_window": False}, {}, 3, id="stops-at-execution-window"),
        pytest.param({}, {"confidence": D("0.3")}, 4, id="stops-at-confidence"),
        pytest.param({}, {"already_processed": True}, 5, id="stops-at-deduplication"),
        pytest.param(
            {"active_commitments": 4, "declining_commitments": 3}, {}, 6, id="stops-at-declining"
        ),
        pytest.param({"active_commitments": 10}, {}, 7, id="stops-at-max-commitments"),
        pytest.param({}, {}, 7, id="act-runs-all-seven"),
    ],
)
def test_checks_tuple_stops_at_the_failing_check(pool_overrides, candidate_overrides, ran: int):
    evaluation = act(make_candidate(**candidate_overrides), make_pool(**pool_overrides))

    assert check_names(evaluation) == CHECK_ORDER[:ran]


# --- evaluate_act: processed semantics ----------------------------------------------------------


@pytest.mark.parametrize(
    ("pool_overrides", "candidate_overrides", "outcome", "reason", "processed"),
    [
        pytest.param(BREAKER, {}, "skip", "circuit_breaker_active", False, id="a-breaker"),
        pytest.param({"halted": True}, {}, "skip", "pool_halted", False, id="a-halt"),
        pytest.param(
            {"entity_cooldowns": {"AAPL": NOW + timedelta(hours=1)}},
            {},
            "skip",
            "entity_cooldown_active",
            False,
            id="a-cooldown",
        ),
        pytest.param(
            {"in_execution_window": False},
            {},
            "skip",
            "outside_execution_window",
            False,
            id="b-window",
        ),
        pytest.param(
            {}, {"confidence": D("0.5")}, "skip", "insufficient_confidence", False, id="c-conf"
        ),
        pytest.param(
            {}, {"already_processed": True}, "skip", "duplicate_recommendation", False, id="d-dup"
        ),
        pytest.param(
            {"active_commitments": 4, "declining_commitments": 3},
            {},
            "skip",
            "multiple_declining_commitments",
            True,
            id="e-declining",
        ),
        pytest.param(
            {"active_commitments": 10}, {}, "skip", "max_commitments_reached", True, id="f-max"
        ),
        pytest.param(
            {}, {"current_value": None}, "skip", "no_current_value", True, id="no-current-value"
        ),
        pytest.param(
            {}, {"current_value": D("0")}, "skip", "no_current_value", True, id="zero-value"
        ),
        pytest.param(
            {},
            {"report_sessions_away": 1},
            "skip",
            "performance_report_imminent",
            True,
            id="sizer-rejects",
        ),
        pytest.param({}, {"atr": None}, "skip", "insufficient_history", True, id="sizer-no-atr"),
        pytest.param({}, {}, "act", "", True, id="act"),
    ],
)
def test_processed_semantics(
    pool_overrides, candidate_overrides, outcome: str, reason: str, processed: bool
) -> None:
    evaluation = act(make_candidate(**candidate_overrides), make_pool(**pool_overrides))

    assert evaluation.outcome == outcome
    assert evaluation.skip_reason == reason
    assert evaluation.processed is processed


def test_sizer_rejection_keeps_the_sizing_and_all_seven_checks() -> None:
    evaluation = act(make_candidate(report_sessions_away=0))

    assert evaluation.sizing is not None
    assert evaluation.sizing.rejected is True
    assert evaluation.sizing.reason == "performance_report_imminent"
    assert check_names(evaluation) == CHECK_ORDER
    assert all(check.passed for check in evaluation.checks)


def test_no_current_value_adds_a_failed_check_and_does_not_size() -> None:
    evaluation = act(make_candidate(current_value=None))

    assert check_names(evaluation) == (*CHECK_ORDER, "current_value")
    assert evaluation.checks[-1].passed is False
    assert evaluation.sizing is None


def test_act_carries_the_sizers_worked_example() -> None:
    evaluation = act()

    assert evaluation.outcome == "act"
    assert evaluation.sizing is not None
    assert evaluation.sizing.units == 636
    assert evaluation.sizing.dollar_amount == D("6360")
    assert evaluation.sizing.allocation_pct == D("0.0636")


def test_act_sizes_against_the_active_pool_net_of_reserve() -> None:
    # 120,000 total − 20,000 reserve = 100,000 active: the worked example again.
    pool = make_pool(total_value=D("120000"), reserve_balance=D("20000"))
    evaluation = act(pool=pool)

    assert pool.active_pool == D("100000")
    assert evaluation.sizing is not None
    assert evaluation.sizing.dollar_amount == D("6360")


def test_act_on_a_held_entity_is_limited_to_its_room() -> None:
    pool = make_pool(
        sector_values={"tech": D("8000"), "energy": D("1000"), "health": D("1000")},
        commitment_values={"AAPL": D("8000"), "XOM": D("1000"), "PFE": D("1000")},
    )
    evaluation = act(pool=pool)

    assert evaluation.outcome == "act"
    assert evaluation.sizing is not None
    assert evaluation.sizing.dollar_amount == D("2000")


def test_act_on_an_entity_at_its_maximum_is_skipped() -> None:
    pool = make_pool(
        sector_values={"tech": D("10000"), "energy": D("1000"), "health": D("1000")},
        commitment_values={"AAPL": D("10000"), "XOM": D("1000"), "PFE": D("1000")},
    )
    evaluation = act(pool=pool)

    assert (evaluation.outcome, evaluation.skip_reason) == ("skip", "position_limit_reached")
    assert evaluation.processed is True


def test_act_reads_sector_exposure_from_the_pool() -> None:
    pool = make_pool(
        sector_values={"tech": D("30000"), "energy": D("1000"), "health": D("1000")},
        commitment_values={"MSFT": D("30000"), "XOM": D("1000"), "PFE": D("1000")},
    )
    evaluation = act(pool=pool)

    assert evaluation.skip_reason == "sector_limit_reached"


# --- evaluate_defer -----------------------------------------------------------------------------


def defer_candidate(**overrides) -> Candidate:
    values = {"action": "defer", "open_units": D("25")}
    values.update(overrides)
    return make_candidate(**values)


@pytest.mark.parametrize(
    ("pool_overrides", "candidate_overrides", "outcome", "reason", "processed"),
    [
        pytest.param(
            {"in_execution_window": False},
            {},
            "skip",
            "outside_execution_window",
            False,
            id="outside-window-not-processed",
        ),
        pytest.param(
            {},
            {"already_processed": True},
            "skip",
            "duplicate_recommendation",
            False,
            id="duplicate-not-processed",
        ),
        pytest.param(
            {},
            {"open_units": D("0")},
            "skip",
            "no_open_commitment",
            True,
            id="no-open-units-processed",
        ),
        pytest.param(
            {},
            {"exit_pending": True},
            "skip",
            "exit_already_pending",
            True,
            id="exit-pending-processed",
        ),
        pytest.param({}, {}, "defer", "", True, id="defer"),
        pytest.param(BREAKER, {}, "defer", "", True, id="breaker-does-not-block-defer"),
        pytest.param({"halted": True}, {}, "defer", "", True, id="halt-does-not-block-defer"),
        pytest.param(
            {"entity_cooldowns": {"AAPL": NOW + timedelta(hours=48)}},
            {},
            "defer",
            "",
            True,
            id="cooldown-does-not-block-defer",
        ),
        pytest.param(
            {"active_commitments": 10, "declining_commitments": 10},
            {"confidence": D("0.01")},
            "defer",
            "",
            True,
            id="entry-checks-do-not-block-defer",
        ),
    ],
)
def test_evaluate_defer(
    pool_overrides, candidate_overrides, outcome: str, reason: str, processed: bool
) -> None:
    candidate = defer_candidate(**candidate_overrides)
    evaluation = evaluate_defer(candidate, make_pool(**pool_overrides))

    assert evaluation.outcome == outcome
    assert evaluation.skip_reason == reason
    assert evaluation.processed is processed
    assert evaluation.sizing is None
    if outcome == "defer":
        assert evaluation.exit_units == candidate.open_units
    else:
        assert evaluation.exit_units == 0


@pytest.mark.parametrize(
    "units",
    [
        pytest.param(D("1"), id="one-unit"),
        pytest.param(D("25"), id="many-units"),
        pytest.param(D("0.5"), id="fractional-unit"),
    ],
)
def test_defer_exits_the_full_quantity(units: Decimal) -> None:
    evaluation = evaluate_defer(defer_candidate(open_units=units), make_pool())

    assert evaluation.outcome == "defer"
    assert evaluation.exit_units == units
    assert check_names(evaluation) == ("execution_window", "deduplication", "open_commitment")


# --- apply_act ----------------------------------------------------------------------------------


def test_apply_act_deducts_and_adds_a_new_commitment() -> None:
    pool = make_pool()
    candidate = make_candidate()
    evaluation = act(candidate, pool)
    assert evaluation.sizing is not None
    dollars = evaluation.sizing.dollar_amount
    assert dollars == D("6360")

    after = apply_act(pool, candidate, evaluation.sizing)

    assert after.cash == D("100000") - dollars
    assert after.deducted == dollars
    assert after.active_pool == D("100000") - dollars
    assert after.total_value == pool.total_value
    assert after.active_commitments == pool.active_commitments + 1
    assert after.sector_values["tech"] == dollars
    assert after.commitment_values["AAPL"] == dollars
    assert after.pool_exposure == evaluation.sizing.new_heat == D("636") * D("0.5") * D("2.0")
    assert "tech" in after.held_sectors


def test_apply_act_on_a_held_entity_does_not_count_a_new_commitment() -> None:
    pool = make_pool(
        sector_values={"tech": D("8000"), "energy": D("1000"), "health": D("1000")},
        commitment_values={"AAPL": D("8000"), "XOM": D("1000"), "PFE": D("1000")},
        pool_exposure=D("100"),
    )
    candidate = make_candidate()
    evaluation = act(candidate, pool)
    assert evaluation.sizing is not None

    after = apply_act(pool, candidate, evaluation.sizing)

    assert after.active_commitments == pool.active_commitments
    assert after.commitment_values["AAPL"] == D("10000")
    assert after.sector_values["tech"] == D("10000")
    assert after.pool_exposure == D("100") + evaluation.sizing.new_heat
    assert after.cash == D("98000")


def test_apply_act_leaves_the_original_pool_unchanged() -> None:
    pool = make_pool()
    sectors_before = dict(pool.sector_values)
    values_before = dict(pool.commitment_values)
    candidate = make_candidate()
    evaluation = act(candidate, pool)
    assert evaluation.sizing is not None

    after = apply_act(pool, candidate, evaluation.sizing)

    assert after is not pool
    assert pool.cash == D("100000")
    assert pool.deducted == 0
    assert pool.active_pool == D("100000")
    assert pool.active_commitments == 3
    assert pool.pool_exposure == 0
    assert dict(pool.sector_values) == sectors_before
    assert dict(pool.commitment_values) == values_before
    with pytest.raises(FrozenInstanceError):
        pool.cash = D("0")  # type: ignore[misc]


def test_apply_act_makes_the_next_candidate_size_against_the_remaining_pool() -> None:
    pool = make_pool()
    first = make_candidate()
    evaluation = act(first, pool)
    assert evaluation.sizing is not None
    after = apply_act(pool, first, evaluation.sizing)

    second = make_candidate(recommendation_id="rec-2", symbol="MSFT")
    again = act(second, after)

    assert again.outcome == "act"
    assert again.sizing is not None
    base = next(s for s in again.sizing.steps if s.step == "base")
    assert base.after == pytest.approx(
        D("0.05") * D("0.70") / D("0.55") * (D("100000") - D("6360"))
    )
    # The second commitment sees the first one's sector value.
    sector = next(s for s in again.sizing.steps if s.step == "sector")
    assert sector.data["sector_value"] == "6360.0000"


def test_apply_act_in_a_loop_stops_at_max_commitments() -> None:
    pool = make_pool(active_commitments=8)
    outcomes = []
    for i in range(4):
        candidate = make_candidate(recommendation_id=f"rec-{i}", symbol=f"E{i}", sector=f"s{i}")
        evaluation = act(candidate, pool)
        outcomes.append(evaluation.skip_reason or evaluation.outcome)
        if evaluation.outcome == "act":
            assert evaluation.sizing is not None
            pool = apply_act(pool, candidate, evaluation.sizing)

    assert outcomes == ["act", "act", "max_commitments_reached", "max_commitments_reached"]
    assert pool.active_commitments == 10


@settings(max_examples=200, deadline=None)
@given(
    confidences=st.lists(
        st.decimals(min_value=D("0.55"), max_value=D("1"), places=3), min_size=1, max_size=8
    ),
    cash=st.decimals(min_value=D("0"), max_value=D("100000"), places=2),
)
def test_property_a_cycle_never_spends_more_than_cash(confidences, cash: Decimal) -> None:
    pool = make_pool(cash=cash, sector_values={}, commitment_values={}, active_commitments=0)
    spent = D("0")
    for i, confidence in enumerate(confidences):
        candidate = make_candidate(
            recommendation_id=f"rec-{i}", symbol=f"E{i}", sector=f"s{i % 3}", confidence=confidence
        )
        evaluation = act(candidate, pool)
        if evaluation.outcome == "act":
            assert evaluation.sizing is not None
            spent += evaluation.sizing.dollar_amount
            pool = apply_act(pool, candidate, evaluation.sizing)

    assert spent <= cash
    assert pool.cash == cash - spent
    assert pool.deducted == spent
    assert all(v <= D("0.30") * D("100000") for v in pool.sector_values.values())


# --- traces -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pool_overrides", "candidate_overrides", "ran"),
    [
        pytest.param({}, {}, 7, id="act"),
        pytest.param(BREAKER, {}, 1, id="breaker-skip"),
        pytest.param(
            {"entity_cooldowns": {"AAPL": NOW + timedelta(hours=1)}}, {}, 1, id="cooldown-skip"
        ),
        pytest.param({"reduce_only": frozenset({"AAPL"})}, {}, 2, id="reconciliation-skip"),
        pytest.param({}, {"confidence": D("0.3")}, 4, id="confidence-skip"),
        pytest.param({"active_commitments": 10}, {}, 7, id="max-skip"),
        pytest.param({}, {"report_sessions_away": 0}, 7, id="sizer-skip"),
        pytest.param({}, {"current_value": None}, 8, id="no-value-skip"),
    ],
)
def test_act_trace_is_json_and_lists_every_check(pool_overrides, candidate_overrides, ran: int):
    candidate = make_candidate(**candidate_overrides)
    pool = make_pool(**pool_overrides)
    evaluation = act(candidate, pool)

    trace = json.loads(json.dumps(evaluation.trace(candidate, pool)))

    assert trace["outcome"] == evaluation.outcome
    assert trace["skip_reason"] == evaluation.skip_reason
    assert trace["processed"] is evaluation.processed
    assert len(trace["checks"]) == ran == len(evaluation.checks)
    assert [c["check"] for c in trace["checks"]] == list(check_names(evaluation))
    for line, check in zip(trace["checks"], evaluation.checks, strict=True):
        assert {"passed", "observed", "limit", "reason"} <= line.keys()
        assert line["passed"] is check.passed
    assert ("sizing" in trace) is (evaluation.sizing is not None)
    assert trace["recommendation"]["id"] == candidate.recommendation_id
    assert trace["pool"]["active_pool"] == str(pool.active_pool)


def test_act_trace_records_observed_and_limit_values() -> None:
    candidate = make_candidate()
    pool = make_pool(active_commitments=9, declining_commitments=4)
    evaluation = act(candidate, pool)
    trace = json.loads(json.dumps(evaluation.trace(candidate, pool)))

    checks = {c["check"]: c for c in trace["checks"]}
    assert checks["confidence"]["observed"] == "0.7"
    assert checks["confidence"]["limit"] == "0.55"
    assert checks["declining_commitments"]["observed"] == "4/9"
    assert checks["declining_commitments"]["limit"] == "0.5"
    assert checks["max_commitments"]["observed"] == 9
    assert checks["max_commitments"]["limit"] == 10
    assert trace["sizing"]["dollar_amount"] == "6360.0000"


def test_defer_trace_is_json_with_exit_units() -> None:
    candidate = defer_candidate(open_units=D("25"))
    pool = make_pool(**BREAKER)
    evaluation = evaluate_defer(candidate, pool)

    trace = json.loads(json.dumps(evaluation.trace(candidate, pool)))

    assert trace["outcome"] == "defer"
    assert trace["exit_units"] == "25"
    assert [c["check"] for c in trace["checks"]] == [
        "execution_window",
        "deduplication",
        "open_commitment",
    ]
