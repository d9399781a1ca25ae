"""Tests of decisions.sizing: the commitment sizer's waterfall, with the source's numbers.

Source, page 6, "Commitment Sizing"; DESIGN.md, "Commitment sizer (pure)". Pure: no database.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decisions.sizing import (
    CommitmentSizeResult,
    SizingConfig,
    SizingInput,
    TierParams,
    size_commitment,
)

D = Decimal

# The source's tier table.
CONSERVATIVE = TierParams(
    name="conservative",
    min_confidence=D("0.75"),
    max_position_pct=D("0.05"),
    stop_loss_atr_multiplier=D("1.5"),
    reward_risk_ratio=D("2.0"),
    max_sector_pct=D("0.20"),
    max_portfolio_heat=D("0.10"),
)
MODERATE = TierParams(
    name="moderate",
    min_confidence=D("0.55"),
    max_position_pct=D("0.10"),
    stop_loss_atr_multiplier=D("2.0"),
    reward_risk_ratio=D("1.5"),
    max_sector_pct=D("0.30"),
    max_portfolio_heat=D("0.20"),
)
AGGRESSIVE = TierParams(
    name="aggressive",
    min_confidence=D("0.40"),
    max_position_pct=D("0.15"),
    stop_loss_atr_multiplier=D("2.5"),
    reward_risk_ratio=D("1.2"),
    max_sector_pct=D("0.40"),
    max_portfolio_heat=D("0.30"),
)
TIERS = {tier.name: tier for tier in (CONSERVATIVE, MODERATE, AGGRESSIVE)}

POOL = D("100000")
HIGH_CAP = D("1000000")
# Three other sectors held: the diversification bonus does not apply unless a case asks for it.
THREE_OTHER_SECTORS = frozenset({"energy", "health", "utilities"})

ACCEPTED_ORDER = (
    "base",
    "clamp",
    "absolute_cap",
    "correlation",
    "sector",
    "diversification_bonus",
    "report_proximity",
    "pool_exposure",
    "units",
)


def make_input(**overrides) -> SizingInput:
    """A candidate that nothing limits except the tier: pool 100,000, value 10, ATR 0.5."""
    values = {
        "confidence": D("0.70"),
        "current_value": D("10"),
        "atr": D("0.5"),
        "correlation": None,
        "sector": "tech",
        "sector_value": D("0"),
        "held_sectors": THREE_OTHER_SECTORS,
        "report_sessions_away": None,
        "active_pool": POOL,
        "available_cash": POOL,
        "pool_exposure": D("0"),
        "existing_value": D("0"),
    }
    values.update(overrides)
    return SizingInput(**values)


def make_config(**overrides) -> SizingConfig:
    """The default configuration with a cap high enough not to mask the other steps."""
    values = {"absolute_commitment_cap": HIGH_CAP}
    values.update(overrides)
    return SizingConfig(**values)


def size(tier: TierParams = MODERATE, config: SizingConfig | None = None, **overrides):
    return size_commitment(make_input(**overrides), tier, config or make_config())


def step(result: CommitmentSizeResult, name: str):
    matches = [s for s in result.steps if s.step == name]
    assert len(matches) == 1, f"expected one {name!r} step, got {[s.step for s in result.steps]}"
    return matches[0]


def step_names(result: CommitmentSizeResult) -> tuple[str, ...]:
    return tuple(s.step for s in result.steps)


def assert_rejected(result: CommitmentSizeResult, reason: str) -> None:
    assert result.rejected is True
    assert result.reason == reason
    assert result.dollar_amount == 0
    assert result.units == 0
    assert result.allocation_pct == 0


# --- the source's worked example ----------------------------------------------------------------


def test_worked_example_moderate_confidence_070() -> None:
    result = size()

    # 0.10 × 0.5 × 0.70 / 0.55 ≈ 0.063636 of the active pool.
    assert step(result, "base").data["raw_pct"] == "0.063636"
    assert step(result, "base").after == pytest.approx(D("6363.64"), abs=D("0.01"))
    assert step(result, "clamp").after == step(result, "base").after
    assert result.rejected is False
    # floor(6363.64 / 10) = 636 units → 6,360 = 6.36 % of the active pool.
    assert result.units == 636
    assert result.dollar_amount == D("6360")
    assert result.allocation_pct == D("0.0636")
    assert step_names(result) == ACCEPTED_ORDER


# --- clamp --------------------------------------------------------------------------------------


@pytest.mark.parametrize("tier_name", ["conservative", "moderate", "aggressive"])
@pytest.mark.parametrize(
    ("confidence_factor", "clamped"),
    [
        pytest.param(D("1.99"), False, id="raw-just-below-max"),
        pytest.param(D("2"), False, id="raw-exactly-max"),
        pytest.param(D("2.01"), True, id="raw-just-above-max-clamped"),
    ],
)
def test_clamp_to_max_position_pct(tier_name: str, confidence_factor: Decimal, clamped: bool):
    # raw_pct = max_position_pct × 0.5 × factor: the factor 2 puts it exactly at the maximum.
    tier = TIERS[tier_name]
    confidence = tier.min_confidence * confidence_factor
    result = size(tier, confidence=confidence)

    raw = tier.max_position_pct * D("0.5") * confidence_factor * POOL
    assert step(result, "base").after == pytest.approx(raw)
    expected = tier.max_position_pct * POOL if clamped else raw
    assert step(result, "clamp").after == pytest.approx(expected)
    assert step(result, "clamp").after <= tier.max_position_pct * POOL
    assert ("Clamped" in step(result, "clamp").note) is clamped


@pytest.mark.parametrize(
    ("tier_name", "raw_pct", "final_pct"),
    [
        # At confidence 1 the raw percentage is max_position_pct × 0.5 / min_confidence: below
        # the maximum for the conservative (3.33 %) and moderate (9.09 %) tiers; only the
        # aggressive tier (18.75 %) is clamped by a confidence within [0, 1].
        pytest.param("conservative", D("0.033333"), D("0.0333"), id="conservative-not-clamped"),
        pytest.param("moderate", D("0.090909"), D("0.0909"), id="moderate-not-clamped"),
        pytest.param("aggressive", D("0.187500"), D("0.15"), id="aggressive-clamped-to-15pct"),
    ],
)
def test_full_confidence_per_tier(tier_name: str, raw_pct: Decimal, final_pct: Decimal) -> None:
    tier = TIERS[tier_name]
    result = size(tier, confidence=D("1"))

    assert step(result, "base").data["raw_pct"] == str(raw_pct)
    assert step(result, "clamp").after <= tier.max_position_pct * POOL
    assert result.allocation_pct == final_pct


# --- absolute cap -------------------------------------------------------------------------------


def test_default_absolute_cap_is_50_dollars() -> None:
    result = size_commitment(make_input(), MODERATE, SizingConfig())

    assert SizingConfig().absolute_commitment_cap == D("50")
    assert step(result, "absolute_cap").before == pytest.approx(D("6363.64"), abs=D("0.01"))
    assert step(result, "absolute_cap").after == D("50")
    assert result.dollar_amount == D("50")
    assert result.units == 5


@pytest.mark.parametrize(
    ("cap", "after"),
    [
        pytest.param(D("5999.99"), D("5999.99"), id="cap-just-below-amount-caps"),
        pytest.param(D("6000"), D("6000"), id="cap-equal-to-amount-unchanged"),
        pytest.param(D("6000.01"), D("6000"), id="cap-just-above-amount-unchanged"),
    ],
)
def test_absolute_cap_boundary(cap: Decimal, after: Decimal) -> None:
    # Moderate at the minimum confidence: 0.05 × 100,000 = 6,000 on an active pool of 120,000.
    result = size(
        config=make_config(absolute_commitment_cap=cap),
        confidence=D("0.55"),
        active_pool=D("120000"),
        available_cash=D("120000"),
    )

    assert step(result, "absolute_cap").before == D("6000")
    assert step(result, "absolute_cap").after == after


def test_absolute_cap_is_a_hard_ceiling_after_the_diversification_bonus() -> None:
    result = size_commitment(
        make_input(held_sectors=frozenset({"energy"})), MODERATE, SizingConfig()
    )

    bonus = step(result, "diversification_bonus")
    assert bonus.before == D("50")
    # 50 × 1.2 = 60 would exceed the cap: re-clamped to 50.
    assert bonus.after == D("50")
    assert result.dollar_amount == D("50")


# --- correlation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("correlation", "check", "factor"),
    [
        pytest.param(None, "no_data", D("1"), id="none-no-data"),
        pytest.param(-0.9, "passed", D("1"), id="negative-no-reduction"),
        pytest.param(0.4999, "passed", D("1"), id="just-below-0.5-no-reduction"),
        pytest.param(0.5, "passed", D("1"), id="exactly-0.5-factor-1"),
        pytest.param(0.5001, "scaled", D("0.29990") / D("0.3"), id="just-above-0.5-scaled"),
        pytest.param(0.65, "scaled", D("0.5"), id="source-example-0.65-halves"),
        pytest.param(0.7999, "scaled", D("0.0001") / D("0.3"), id="just-below-0.8-scaled"),
    ],
)
def test_correlation_scaling(correlation, check: str, factor: Decimal) -> None:
    result = size(correlation=correlation)

    corr = step(result, "correlation")
    assert result.correlation_check == check
    assert result.correlation == correlation
    assert corr.after == pytest.approx(corr.before * factor)
    # Not rejected by the correlation step (0.7999 leaves 2.12 dollars: zero units later).
    assert result.reason != "correlation_too_high"
    assert step_names(result)[-1] != "correlation"


def test_correlation_065_halves_the_worked_example() -> None:
    result = size(correlation=0.65)

    assert step(result, "correlation").after == pytest.approx(D("3181.82"), abs=D("0.01"))
    assert result.units == 318
    assert result.dollar_amount == D("3180")


@pytest.mark.parametrize(
    "correlation",
    [
        pytest.param(0.8, id="exactly-0.8-scales-to-zero"),
        pytest.param(0.8001, id="just-above-0.8"),
        pytest.param(0.95, id="well-above-0.8"),
        pytest.param(1.0, id="perfect-correlation"),
    ],
)
def test_correlation_rejects(correlation: float) -> None:
    result = size(correlation=correlation)

    assert_rejected(result, "correlation_too_high")
    assert result.correlation_check == "rejected"
    assert step_names(result)[-1] == "correlation"
    assert step(result, "correlation").after == 0


# --- sector -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sector_value", "check", "after"),
    [
        # Moderate: the limit is 30 % of 100,000 = 30,000; the amount is 6,363.64.
        pytest.param(D("0"), "passed", None, id="empty-sector-unchanged"),
        pytest.param(D("20000"), "passed", None, id="well-below-unchanged"),
        pytest.param(D("29000"), "reduced", D("1000"), id="below-cut-to-room"),
        pytest.param(D("29999.99"), "reduced", D("0.01"), id="one-cent-below-cut-to-cent"),
    ],
)
def test_sector_room(sector_value: Decimal, check: str, after: Decimal | None) -> None:
    result = size(sector_value=sector_value, held_sectors=THREE_OTHER_SECTORS | {"tech"})

    sector = step(result, "sector")
    assert result.sector_check == check
    assert sector.after == (sector.before if after is None else after)
    assert sector.after + sector_value <= D("30000")


def test_sector_cut_fills_the_room_exactly() -> None:
    result = size(sector_value=D("29000"), held_sectors=THREE_OTHER_SECTORS | {"tech"})

    assert result.dollar_amount == D("1000")
    assert result.sector_exposure_after == D("30000")


@pytest.mark.parametrize(
    "sector_value",
    [
        pytest.param(D("30000"), id="exactly-at-limit"),
        pytest.param(D("30000.01"), id="above-limit"),
    ],
)
def test_sector_at_limit_rejects(sector_value: Decimal) -> None:
    result = size(sector_value=sector_value, held_sectors=THREE_OTHER_SECTORS | {"tech"})

    assert_rejected(result, "sector_limit_reached")
    assert result.sector_check == "rejected"
    assert step_names(result)[-1] == "sector"


# --- diversification bonus ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "bonus"),
    [
        pytest.param(frozenset(), True, id="no-sector-held-new-sector-bonus"),
        pytest.param(frozenset({"energy", "health"}), True, id="two-held-new-sector-bonus"),
        pytest.param(frozenset({"tech"}), False, id="sector-already-held-no-bonus"),
        pytest.param(frozenset({"tech", "energy"}), False, id="two-held-incl-sector-no-bonus"),
        pytest.param(THREE_OTHER_SECTORS, False, id="three-held-no-bonus"),
        pytest.param(THREE_OTHER_SECTORS | {"retail"}, False, id="four-held-no-bonus"),
    ],
)
def test_diversification_bonus(held: frozenset[str], bonus: bool) -> None:
    sector_value = D("1000") if "tech" in held else D("0")
    result = size(held_sectors=held, sector_value=sector_value)

    div = step(result, "diversification_bonus")
    expected = div.before * D("1.2") if bonus else div.before
    assert div.after == pytest.approx(expected)
    assert div.note


def test_diversification_bonus_reclamped_to_max_position_pct() -> None:
    # Moderate, confidence 0.95: 0.05 × 0.95 / 0.55 ≈ 8.64 %; × 1.2 ≈ 10.36 % > 10 %.
    result = size(confidence=D("0.95"), held_sectors=frozenset())

    div = step(result, "diversification_bonus")
    assert div.before == pytest.approx(D("8636.36"), abs=D("0.01"))
    assert div.before * D("1.2") > D("10000")
    assert div.after == D("10000")
    assert result.dollar_amount == D("10000")
    assert result.allocation_pct == D("0.1")


# --- performance report proximity ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("away", "proximity", "factor"),
    [
        pytest.param(None, "none", D("1"), id="no-report-none"),
        pytest.param(2, "reduced", D("0.5"), id="two-sessions-halved"),
        pytest.param(3, "reduced", D("0.5"), id="exactly-three-sessions-halved"),
        pytest.param(4, "clear", D("1"), id="four-sessions-unchanged"),
        pytest.param(30, "clear", D("1"), id="far-away-unchanged"),
    ],
)
def test_report_proximity_adjusts(away: int | None, proximity: str, factor: Decimal) -> None:
    result = size(report_sessions_away=away)

    report = step(result, "report_proximity")
    assert result.report_proximity == proximity
    assert report.after == report.before * factor
    assert result.rejected is False


@pytest.mark.parametrize(
    "away",
    [
        pytest.param(0, id="report-this-session"),
        pytest.param(1, id="report-exactly-one-session-away"),
    ],
)
def test_report_proximity_rejects(away: int) -> None:
    result = size(report_sessions_away=away)

    assert_rejected(result, "performance_report_imminent")
    assert result.report_proximity == "rejected"
    assert step_names(result)[-1] == "report_proximity"


# --- pool exposure (heat) -----------------------------------------------------------------------

# Moderate at the minimum confidence: 5,000 dollars → 500 units × ATR 0.5 × 2.0 = 500 of heat;
# the cap is 20 % of 100,000 = 20,000.


@pytest.mark.parametrize(
    ("exposure", "rejected"),
    [
        pytest.param(D("0"), False, id="no-exposure-passes"),
        pytest.param(D("19499.99"), False, id="one-cent-below-cap-passes"),
        pytest.param(D("19500"), False, id="exactly-at-cap-passes"),
        pytest.param(D("19500.01"), True, id="one-cent-above-cap-rejected"),
    ],
)
def test_pool_exposure_boundary(exposure: Decimal, rejected: bool) -> None:
    result = size(confidence=D("0.55"), pool_exposure=exposure)

    assert result.new_heat == D("500")
    assert step(result, "pool_exposure").data["heat_cap"] == "20000.0000"
    if rejected:
        assert_rejected(result, "pool_exposure_limit")
        assert step_names(result)[-1] == "pool_exposure"
    else:
        assert result.rejected is False
        assert result.units == 500


@pytest.mark.parametrize(
    ("tier_name", "heat"),
    [
        # floor(dollars / 10) units × ATR 0.5 × the tier's multiplier.
        pytest.param("conservative", D("250") * D("0.5") * D("1.5"), id="conservative-x1.5"),
        pytest.param("moderate", D("500") * D("0.5") * D("2.0"), id="moderate-x2.0"),
        pytest.param("aggressive", D("750") * D("0.5") * D("2.5"), id="aggressive-x2.5"),
    ],
)
def test_new_heat_is_units_times_atr_times_multiplier(tier_name: str, heat: Decimal) -> None:
    tier = TIERS[tier_name]
    result = size(tier, confidence=tier.min_confidence)

    assert result.new_heat == heat
    assert result.new_heat == result.units * D("0.5") * tier.stop_loss_atr_multiplier


def test_heat_uses_whole_units() -> None:
    # 6,363.64 dollars at value 10 → 636 whole units, not 636.364.
    result = size()

    assert result.new_heat == D("636") * D("0.5") * D("2.0")


def test_missing_atr_rejects_insufficient_history() -> None:
    result = size(atr=None)

    assert_rejected(result, "insufficient_history")
    assert step_names(result)[-1] == "pool_exposure"


def test_new_heat_matches_the_units_actually_bought_when_cash_limits() -> None:
    result = size(confidence=D("0.55"), available_cash=D("1000"))

    assert result.units == 100
    assert result.new_heat == result.units * D("0.5") * D("2.0")


def test_heat_check_judges_the_cash_limited_units() -> None:
    # With a 20,000 heat cap and 19,500 in use: 636 units (heat 636) would not fit, the 100
    # units the cash allows (heat 100) do.
    assert size(pool_exposure=D("19500")).reason == "pool_exposure_limit"
    result = size(available_cash=D("1000"), pool_exposure=D("19500"))

    assert result.rejected is False and result.units == 100


# --- units --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "units", "dollars"),
    [
        pytest.param(D("10"), D("636"), D("6360"), id="value-10"),
        pytest.param(D("7"), D("909"), D("6363"), id="value-7"),
        pytest.param(D("6363.63"), D("1"), D("6363.63"), id="one-unit-just-fits"),
        pytest.param(D("3181.81"), D("2"), D("6363.62"), id="two-units-just-fit"),
        pytest.param(D("3181.82"), D("1"), D("3181.82"), id="two-units-one-cent-short"),
    ],
)
def test_units_floor_and_dollars_recomputed(value: Decimal, units: Decimal, dollars: Decimal):
    result = size(current_value=value)

    assert result.rejected is False
    assert result.units == units
    assert result.dollar_amount == dollars
    assert result.dollar_amount == result.units * value
    assert result.dollar_amount <= step(result, "units").before


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(D("6363.64"), id="value-just-above-amount"),
        pytest.param(D("10000"), id="value-well-above-amount"),
    ],
)
def test_value_above_amount_rejects_zero_units(value: Decimal) -> None:
    result = size(current_value=value)

    assert_rejected(result, "zero_units")
    assert step_names(result)[-1] == "units"


@pytest.mark.parametrize(
    ("cash", "units"),
    [
        pytest.param(D("1000"), D("100"), id="cash-below-amount-limits-units"),
        pytest.param(D("1009.99"), D("100"), id="cash-between-units-floors"),
        pytest.param(D("6360"), D("636"), id="cash-exactly-the-amount"),
        pytest.param(D("10"), D("1"), id="cash-exactly-one-unit"),
    ],
)
def test_units_limited_by_spendable_cash(cash: Decimal, units: Decimal) -> None:
    result = size(available_cash=cash)

    assert result.rejected is False
    assert result.units == units
    assert result.dollar_amount == units * D("10")
    assert result.dollar_amount <= cash


@pytest.mark.parametrize(
    "cash",
    [
        pytest.param(D("9.99"), id="cash-just-below-one-unit"),
        pytest.param(D("0"), id="no-cash"),
        pytest.param(D("-5"), id="negative-cash"),
    ],
)
def test_cash_below_one_unit_rejects_insufficient_cash(cash: Decimal) -> None:
    result = size(available_cash=cash)

    assert_rejected(result, "insufficient_cash")
    assert step_names(result)[-1] == "units"


# --- active pool and an existing commitment -----------------------------------------------------


@pytest.mark.parametrize(
    "pool",
    [pytest.param(D("0"), id="zero-pool"), pytest.param(D("-100"), id="negative-pool")],
)
def test_empty_active_pool_rejects(pool: Decimal) -> None:
    result = size(active_pool=pool)

    assert_rejected(result, "insufficient_active_pool")
    assert len(result.steps) == 1
    assert result.steps[0].note


@pytest.mark.parametrize(
    "existing",
    [
        pytest.param(D("10000"), id="existing-exactly-at-max"),
        pytest.param(D("12000"), id="existing-above-max"),
    ],
)
def test_existing_commitment_at_max_rejects(existing: Decimal) -> None:
    result = size(existing_value=existing, sector_value=existing)

    assert_rejected(result, "position_limit_reached")
    assert step_names(result)[-1] == "position_room"


@pytest.mark.parametrize(
    ("existing", "add"),
    [
        pytest.param(D("8000"), D("2000"), id="partial-add-limited-to-room"),
        pytest.param(D("9999.99"), None, id="one-cent-room-rejects-zero-units"),
        pytest.param(D("3636.36"), D("6363.64"), id="room-just-fits-the-amount"),
        pytest.param(D("1000"), D("6363.64"), id="room-larger-than-amount-unchanged"),
    ],
)
def test_existing_commitment_limits_the_add(existing: Decimal, add: Decimal | None) -> None:
    result = size(existing_value=existing, sector_value=existing)

    if add is None:
        assert_rejected(result, "zero_units")
        assert step(result, "position_room").after == D("0.01")
        return
    assert result.rejected is False
    assert step(result, "sector").after == pytest.approx(add, abs=D("0.01"))
    assert existing + result.dollar_amount <= D("10000")


# --- the waterfall ------------------------------------------------------------------------------


def test_accepted_waterfall_in_source_order() -> None:
    result = size(correlation=0.65, report_sessions_away=2, held_sectors=frozenset())

    assert result.rejected is False
    assert step_names(result) == ACCEPTED_ORDER
    for previous, current in zip(result.steps, result.steps[1:], strict=False):
        assert current.before == previous.after, (previous.step, current.step)
    assert result.notes == tuple(s.note for s in result.steps)


@pytest.mark.parametrize(
    ("overrides", "reason", "last"),
    [
        pytest.param({"active_pool": D("0")}, "insufficient_active_pool", "active_pool", id="pool"),
        pytest.param(
            {"existing_value": D("10000")}, "position_limit_reached", "position_room", id="position"
        ),
        pytest.param({"correlation": 0.9}, "correlation_too_high", "correlation", id="corr"),
        pytest.param({"sector_value": D("30000")}, "sector_limit_reached", "sector", id="sector"),
        pytest.param(
            {"report_sessions_away": 1},
            "performance_report_imminent",
            "report_proximity",
            id="report",
        ),
        pytest.param(
            {"pool_exposure": D("20000")}, "pool_exposure_limit", "pool_exposure", id="heat"
        ),
        pytest.param({"atr": None}, "insufficient_history", "pool_exposure", id="atr"),
        pytest.param({"current_value": D("7000")}, "zero_units", "units", id="zero-units"),
        pytest.param({"available_cash": D("5")}, "insufficient_cash", "units", id="cash"),
    ],
)
def test_rejected_waterfall_stops_at_the_rejecting_step(overrides, reason: str, last: str):
    result = size(**overrides)

    assert_rejected(result, reason)
    names = step_names(result)
    assert names[-1] == last
    assert len(names) == len(set(names))
    expected_prefix = [n for n in ACCEPTED_ORDER if n in names]
    assert [n for n in names if n in ACCEPTED_ORDER] == expected_prefix
    assert all(isinstance(s.note, str) and s.note for s in result.steps)
    json.dumps(result.as_trace())


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="accepted"),
        pytest.param({"correlation": 0.65, "report_sessions_away": 3}, id="scaled-and-halved"),
        pytest.param({"existing_value": D("8000"), "sector_value": D("8000")}, id="add"),
        pytest.param({"report_sessions_away": 0}, id="rejected"),
    ],
)
def test_trace_is_json_serialisable_and_notes_are_text(overrides) -> None:
    result = size(**overrides)

    trace = json.loads(json.dumps(result.as_trace()))
    assert trace["rejected"] is result.rejected
    assert [line["step"] for line in trace["waterfall"]] == list(step_names(result))
    assert all(isinstance(line["note"], str) and line["note"] for line in trace["waterfall"])
    assert all(isinstance(note, str) and note for note in result.notes)


def test_result_is_frozen() -> None:
    result = size()

    with pytest.raises(AttributeError):
        result.units = D("1")  # type: ignore[misc]


# --- properties ---------------------------------------------------------------------------------

SECTORS = ("tech", "energy", "health", "utilities", "retail")


def _money(min_value: str, max_value: str) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=D(min_value), max_value=D(max_value), places=2, allow_nan=False)


@st.composite
def sizing_cases(draw):
    tier = draw(st.sampled_from([CONSERVATIVE, MODERATE, AGGRESSIVE]))
    confidence = draw(st.decimals(min_value=tier.min_confidence, max_value=D("1"), places=4))
    active_pool = draw(_money("0.01", "10000000"))
    held = frozenset(draw(st.sets(st.sampled_from(SECTORS), max_size=4)))
    sector = draw(st.sampled_from(SECTORS))
    # A sector not held carries no value (the engine derives held sectors from the values).
    sector_value = draw(_money("0", str(active_pool * D("0.5")))) if sector in held else D("0")
    existing_value = D("0")
    if sector_value >= D("0.01"):
        existing_value = draw(st.one_of(st.just(D("0")), _money("0.01", str(sector_value))))
    inp = SizingInput(
        confidence=confidence,
        current_value=draw(_money("0.01", "5000")),
        atr=draw(st.one_of(st.none(), _money("0", "50"))),
        correlation=draw(
            st.one_of(st.none(), st.floats(min_value=-1, max_value=1, allow_nan=False))
        ),
        sector=sector,
        sector_value=sector_value,
        held_sectors=held,
        report_sessions_away=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=10))),
        active_pool=active_pool,
        available_cash=draw(_money("-100", "10000000")),
        pool_exposure=draw(_money("0", str(active_pool * D("0.3")))),
        existing_value=existing_value if sector in held else D("0"),
    )
    config = SizingConfig(absolute_commitment_cap=draw(_money("1", "1000000")))
    return inp, tier, config


@settings(max_examples=200, deadline=None)
@given(sizing_cases())
def test_property_accepted_amount_respects_every_ceiling(case) -> None:
    inp, tier, config = case
    result = size_commitment(inp, tier, config)

    if result.rejected:
        assert result.dollar_amount == 0
        assert result.units == 0
        assert result.reason
        return
    assert result.reason == ""
    assert result.dollar_amount <= tier.max_position_pct * inp.active_pool + D("0.0001")
    assert inp.existing_value + result.dollar_amount <= (
        tier.max_position_pct * inp.active_pool + D("0.0001")
    )
    assert result.dollar_amount <= config.absolute_commitment_cap
    assert result.dollar_amount <= inp.active_pool
    assert result.dollar_amount <= inp.available_cash
    assert result.units == result.units.to_integral_value()
    assert result.units >= 1
    assert result.units * inp.current_value == result.dollar_amount
    assert result.dollar_amount <= step(result, "units").before
    assert inp.sector_value + result.dollar_amount <= tier.max_sector_pct * inp.active_pool
    assert inp.pool_exposure + result.new_heat <= tier.max_portfolio_heat * inp.active_pool
    assert step_names(result)[-1] == "units"


@settings(max_examples=200, deadline=None)
@given(sizing_cases())
def test_property_trace_and_notes(case) -> None:
    inp, tier, config = case
    result = size_commitment(inp, tier, config)

    json.dumps(result.as_trace())
    assert all(isinstance(s.note, str) and s.note for s in result.steps)
    names = step_names(result)
    assert [n for n in names if n in ACCEPTED_ORDER] == [n for n in ACCEPTED_ORDER if n in names]
    if result.rejected:
        assert step(result, names[-1]).after == 0


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([CONSERVATIVE, MODERATE, AGGRESSIVE]),
    st.floats(min_value=-1, max_value=1, allow_nan=False),
)
def test_property_correlation_never_increases_the_amount(tier: TierParams, corr: float) -> None:
    result = size(tier, confidence=D("1"), correlation=corr)

    c = step(result, "correlation")
    assert c.after <= c.before
    if corr < 0.5:
        assert c.after == c.before
    if result.rejected and result.reason == "zero_units":
        # Scaled down so far, just under 0.8, that not one unit is left.
        assert corr > 0.5 and c.after < make_input().current_value
    elif result.rejected:
        assert result.reason == "correlation_too_high"
        assert corr >= 0.8 - 1e-6


def test_make_input_default_changes_one_thing_at_a_time() -> None:
    # Guard for the helpers: the defaults leave every step but base/clamp/units inert.
    base = make_input()
    result = size_commitment(base, MODERATE, make_config())
    for name in ("absolute_cap", "correlation", "sector", "diversification_bonus"):
        assert step(result, name).after == step(result, name).before, name
    assert step(result, "report_proximity").after == step(result, "report_proximity").before
