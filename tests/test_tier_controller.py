"""Tests of portfolio.tier_controller: one-step risk tier moves on the source's thresholds.

Source, "Risk Tier Auto-Adjustment": downgrade on success rate < 40 % or decline > 15 %; upgrade
on success rate > 55 %, reserve > 20 % and decline < 5 %. Pure: no database.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portfolio.tier_controller import (
    TIER_LADDER,
    TierDecision,
    TierMetrics,
    TierRules,
    evaluate_tier,
)

D = Decimal
RULES = TierRules()


def make_metrics(
    success: str | None = "0.50",
    decline: str = "0.10",
    reserve: str = "0.10",
    ratio: float | None = 1.2,
) -> TierMetrics:
    """Metrics that neither downgrade nor upgrade unless a case says otherwise."""
    return TierMetrics(
        success_rate=None if success is None else D(success),
        peak_to_trough=D(decline),
        reserve_pct=D(reserve),
        risk_adjusted_return=ratio,
    )


UPGRADE = {"success": "0.60", "decline": "0.01", "reserve": "0.25"}


def test_rules_defaults_are_the_source_numbers() -> None:
    assert TierRules() == TierRules(
        downgrade_success_rate=D("0.40"),
        downgrade_drawdown=D("0.15"),
        upgrade_success_rate=D("0.55"),
        upgrade_reserve_pct=D("0.20"),
        upgrade_max_drawdown=D("0.05"),
        min_closed_for_success_rate=5,
    )


@pytest.mark.parametrize(
    ("current", "overrides", "new", "direction"),
    [
        # Downgrade boundaries.
        pytest.param("moderate", {"success": "0.40"}, "moderate", "hold", id="success-exactly-40"),
        pytest.param(
            "moderate", {"success": "0.3999"}, "conservative", "downgrade", id="success-below-40"
        ),
        pytest.param("moderate", {"decline": "0.15"}, "moderate", "hold", id="decline-exactly-15"),
        pytest.param(
            "moderate", {"decline": "0.1501"}, "conservative", "downgrade", id="decline-above-15"
        ),
        pytest.param(
            "aggressive", {"success": "0.20"}, "moderate", "downgrade", id="aggressive-steps-down"
        ),
        pytest.param(
            "conservative", {"success": "0.20"}, "conservative", "hold", id="bottom-of-ladder"
        ),
        # Upgrade boundaries: each condition alone at its threshold blocks the step.
        pytest.param("moderate", UPGRADE, "aggressive", "upgrade", id="all-three-upgrade"),
        pytest.param(
            "moderate", {**UPGRADE, "success": "0.55"}, "moderate", "hold", id="success-exactly-55"
        ),
        pytest.param(
            "moderate",
            {**UPGRADE, "success": "0.5501"},
            "aggressive",
            "upgrade",
            id="success-55.01",
        ),
        pytest.param(
            "moderate", {**UPGRADE, "reserve": "0.20"}, "moderate", "hold", id="reserve-exactly-20"
        ),
        pytest.param(
            "moderate",
            {**UPGRADE, "reserve": "0.2001"},
            "aggressive",
            "upgrade",
            id="reserve-20.01",
        ),
        pytest.param(
            "moderate", {**UPGRADE, "decline": "0.05"}, "moderate", "hold", id="decline-exactly-5"
        ),
        pytest.param(
            "moderate", {**UPGRADE, "decline": "0.0499"}, "aggressive", "upgrade", id="decline-4.99"
        ),
        pytest.param("conservative", UPGRADE, "moderate", "upgrade", id="conservative-steps-up"),
        pytest.param("aggressive", UPGRADE, "aggressive", "hold", id="top-of-ladder"),
        # Downgrade wins: success 0.30 < 0.40 while reserve and decline would allow an upgrade.
        pytest.param(
            "moderate",
            {**UPGRADE, "success": "0.30"},
            "conservative",
            "downgrade",
            id="downgrade-wins-success",
        ),
        # Downgrade wins: decline 0.16 > 0.15 with a success rate above 55 %.
        pytest.param(
            "aggressive",
            {**UPGRADE, "decline": "0.16"},
            "moderate",
            "downgrade",
            id="downgrade-wins-decline",
        ),
        # No closed commitments: no evidence either way.
        pytest.param(
            "moderate", {**UPGRADE, "success": None}, "moderate", "hold", id="no-success-no-upgrade"
        ),
        pytest.param(
            "moderate", {"success": None}, "moderate", "hold", id="no-success-no-downgrade"
        ),
        pytest.param(
            "moderate",
            {"success": None, "decline": "0.20"},
            "conservative",
            "downgrade",
            id="no-success-drawdown-still-downgrades",
        ),
    ],
)
def test_evaluate_tier(current: str, overrides: dict, new: str, direction: str) -> None:
    decision = evaluate_tier(current, make_metrics(**overrides), RULES)

    assert decision.current == current
    assert decision.new == new
    assert decision.direction == direction
    assert decision.changed is (new != current)
    assert decision.reasons


def test_downgrade_reasons_are_readable() -> None:
    decision = evaluate_tier("aggressive", make_metrics(success="0.38", decline="0.20"), RULES)

    assert decision == TierDecision(
        current="aggressive",
        new="moderate",
        changed=True,
        direction="downgrade",
        reasons=("success rate 0.3800 < 0.40", "peak-to-trough decline 0.2000 > 0.15"),
        metrics={
            "success_rate": "0.38",
            "peak_to_trough": "0.20",
            "reserve_pct": "0.10",
            "closed_in_window": None,
            "risk_adjusted_return": 1.2,
        },
    )


def test_upgrade_reasons_name_all_three_conditions() -> None:
    decision = evaluate_tier("moderate", make_metrics(**UPGRADE), RULES)

    assert decision.reasons == (
        "success rate 0.6000 > 0.55",
        "reserve 0.2500 > 0.20",
        "peak-to-trough decline 0.0100 < 0.05",
    )


def test_hold_reasons_name_the_unmet_upgrade_conditions() -> None:
    decision = evaluate_tier("moderate", make_metrics(success="0.55", reserve="0.20"), RULES)

    assert decision.reasons == (
        "success rate 0.5500 ≤ 0.55",
        "reserve 0.2000 ≤ 0.20",
        "peak-to-trough decline 0.1000 ≥ 0.05",
    )


@pytest.mark.parametrize(
    ("current", "overrides", "ending"),
    [
        pytest.param("conservative", {"success": "0.10"}, "the bottom of the ladder", id="bottom"),
        pytest.param("aggressive", UPGRADE, "the top of the ladder", id="top"),
    ],
)
def test_ends_of_the_ladder_say_why_they_hold(current: str, overrides: dict, ending: str) -> None:
    decision = evaluate_tier(current, make_metrics(**overrides), RULES)

    assert not decision.changed
    assert decision.reasons[-1] == f"already at {current}, {ending}"


@pytest.mark.parametrize(
    ("closed", "success", "decline", "new", "direction"),
    [
        # One losing close on the first day: 0 % on a sample of one is no evidence.
        pytest.param(1, "0.00", "0.01", "moderate", "hold", id="one-loss-holds"),
        pytest.param(4, "0.00", "0.01", "moderate", "hold", id="four-below-minimum-holds"),
        pytest.param(5, "0.20", "0.01", "conservative", "downgrade", id="five-is-evidence"),
        pytest.param(None, "0.20", "0.01", "conservative", "downgrade", id="unknown-sample"),
        # The drawdown rule needs no sample.
        pytest.param(1, "0.00", "0.16", "conservative", "downgrade", id="drawdown-still-applies"),
        # A thin sample cannot upgrade either.
        pytest.param(3, "1.00", "0.01", "moderate", "hold", id="thin-sample-no-upgrade"),
    ],
)
def test_success_rate_counts_only_on_enough_closed_commitments(
    closed, success, decline, new, direction
) -> None:
    metrics = TierMetrics(
        success_rate=D(success),
        peak_to_trough=D(decline),
        reserve_pct=D("0.25"),
        closed_in_window=closed,
    )

    decision = evaluate_tier("moderate", metrics, RULES)

    assert (decision.new, decision.direction) == (new, direction)
    assert decision.metrics["closed_in_window"] == closed
    if direction == "hold":
        assert f"{closed} closed commitment(s) in the window, fewer than 5" in decision.reasons[0]


def test_no_success_rate_says_there_is_no_evidence() -> None:
    decision = evaluate_tier("moderate", make_metrics(**{**UPGRADE, "success": None}), RULES)

    assert decision.reasons == ("no closed commitments in the window: no success rate evidence",)
    assert decision.metrics["success_rate"] is None


@pytest.mark.parametrize(
    ("ratio", "recorded"),
    [
        pytest.param(None, None, id="none"),
        pytest.param(float("nan"), None, id="nan"),
        pytest.param(float("inf"), None, id="inf"),
        pytest.param(-0.75, -0.75, id="finite"),
    ],
)
def test_metrics_are_json_safe(ratio: float | None, recorded: float | None) -> None:
    decision = evaluate_tier("moderate", make_metrics(ratio=ratio), RULES)

    assert decision.metrics["risk_adjusted_return"] == recorded
    json.loads(json.dumps(decision.metrics, allow_nan=False))


def test_configured_rules_are_used() -> None:
    rules = TierRules(downgrade_success_rate=D("0.50"))

    assert evaluate_tier("moderate", make_metrics(success="0.45"), rules).new == "conservative"


@pytest.mark.parametrize("tier", ["", "Moderate", "reckless"])
def test_unknown_tier_is_an_error(tier: str) -> None:
    with pytest.raises(ValueError, match="unknown risk tier"):
        evaluate_tier(tier, make_metrics(), RULES)


fractions = st.decimals(min_value=0, max_value=1, places=4)


@settings(max_examples=300)
@given(
    current=st.sampled_from(TIER_LADDER),
    success=st.none() | fractions,
    decline=fractions,
    reserve=fractions,
)
def test_tier_stays_on_the_ladder_and_moves_at_most_one_step(
    current: str, success: Decimal | None, decline: Decimal, reserve: Decimal
) -> None:
    metrics = TierMetrics(success, decline, reserve, None)

    decision = evaluate_tier(current, metrics, RULES)

    assert decision.new in TIER_LADDER
    step = TIER_LADDER.index(decision.new) - TIER_LADDER.index(current)
    assert step == {"downgrade": -1, "upgrade": 1, "hold": 0}[decision.direction]
    assert decision.changed is (step != 0)
