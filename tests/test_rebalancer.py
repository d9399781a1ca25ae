"""Tests of portfolio.rebalancer: trims back to the position, sector and pool exposure limits."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portfolio.rebalancer import (
    RebalanceHolding,
    RebalanceLimits,
    RebalancePlan,
    Trim,
    plan_rebalance,
)

D = Decimal

# Active pool 10 000: position limit 1 000, sector limit 3 000, pool exposure cap 2 000.
LIMITS = RebalanceLimits(
    max_position_pct=D("0.10"),
    max_sector_pct=D("0.30"),
    max_portfolio_heat=D("0.20"),
    active_pool=D("10000"),
)


def _holding(
    commitment_id: int,
    symbol: str,
    units: int | str,
    value: str,
    sector: str = "Tech",
    risk_threshold: str | None = None,
) -> RebalanceHolding:
    return RebalanceHolding(
        commitment_id=commitment_id,
        symbol=symbol,
        sector=sector,
        units=D(units),
        current_value=D(value),
        risk_threshold=D(risk_threshold) if risk_threshold is not None else None,
    )


def _limits(
    position: str = "0.10", sector: str = "0.30", heat: str = "0.20", pool: str = "10000"
) -> RebalanceLimits:
    return RebalanceLimits(D(position), D(sector), D(heat), D(pool))


def _sold(plan: RebalancePlan) -> dict[str, Decimal]:
    return {trim.symbol: trim.units for trim in plan.trims}


# Position limit ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "value", "expected_sold"),
    [
        pytest.param(10, "100", None, id="exactly-at-limit"),
        pytest.param(9, "111.11", None, id="just-below"),  # 999.99
        pytest.param(11, "100", "1", id="one-unit-over"),
        # 10 × 100.01 = 1000.10: a tenth of a unit over still sells a whole unit → 900.09.
        pytest.param(10, "100.01", "1", id="a-cent-per-unit-over"),
        # 25 × 45 = 1125: 125 / 45 = 2.78 → 3 units, leaving 22 × 45 = 990.
        pytest.param(25, "45", "3", id="rounds-up"),
        # 12 × 250 = 3000: 2000 / 250 = 8 exactly, leaving 1000.
        pytest.param(12, "250", "8", id="exact-division"),
    ],
)
def test_position_limit_on_both_sides(units: int, value: str, expected_sold: str | None) -> None:
    plan = plan_rebalance([_holding(1, "AAA", units, value)], LIMITS)

    if expected_sold is None:
        assert plan.trims == ()
    else:
        (trim,) = plan.trims
        assert trim.units == D(expected_sold)
        assert trim.reason == "position_limit"
        assert (D(units) - trim.units) * D(value) <= D("1000")


def test_position_trim_note_states_the_figures() -> None:
    (trim,) = plan_rebalance([_holding(7, "AAA", 25, "45")], LIMITS).trims

    assert trim == Trim(
        commitment_id=7,
        symbol="AAA",
        units=D("3"),
        reason="position_limit",
        note=(
            "AAA: value 1125.00 → 990.00 (25 → 22 units), position limit 1000.00 "
            "(10 % of the active pool)"
        ),
    )


def test_position_limit_of_zero_sells_everything() -> None:
    plan = plan_rebalance([_holding(1, "AAA", 4, "10")], _limits(position="0"))

    assert _sold(plan) == {"AAA": D("4")}


# Sector limit ------------------------------------------------------------------------------------


def _tech(extra_ddd: int = 0) -> list[RebalanceHolding]:
    return [
        _holding(1, "AAA", 10, "100"),  # 1000
        _holding(2, "BBB", 9, "100"),  # 900
        _holding(3, "CCC", 8, "100"),  # 800
        _holding(4, "DDD", 5 + extra_ddd, "60"),  # 300 + 60 per extra unit
        _holding(5, "EEE", 10, "100", sector="Energy"),  # another sector, untouched
    ]


@pytest.mark.parametrize(
    ("extra_ddd", "expected"),
    [
        pytest.param(0, {}, id="exactly-at-limit"),  # 3000
        # 3060: 60 over, the largest (AAA, 1000) sells ceil(60 / 100) = 1.
        pytest.param(1, {"AAA": D("1")}, id="just-over-largest-sells"),
        # 3300: 300 over, AAA sells 3.
        pytest.param(5, {"AAA": D("3")}, id="over"),
    ],
)
def test_sector_limit_on_both_sides(extra_ddd: int, expected: dict[str, Decimal]) -> None:
    plan = plan_rebalance(_tech(extra_ddd), LIMITS)

    assert _sold(plan) == expected
    assert all(trim.reason == "sector_limit" for trim in plan.trims)


def test_sector_trim_takes_the_largest_first_then_the_next() -> None:
    holdings = [
        _holding(1, "CCC", 5, "50"),  # 250
        _holding(2, "BBB", 15, "100"),  # 1500
        _holding(3, "AAA", 20, "100"),  # 2000
    ]
    limits = _limits(position="1", sector="0.10")  # sector limit 1000

    plan = plan_rebalance(holdings, limits)

    # 3750 − 1000 = 2750 over: AAA sells all 20 (2000), then BBB ceil(750 / 100) = 8; CCC untouched.
    assert _sold(plan) == {"AAA": D("20"), "BBB": D("8")}
    assert [trim.symbol for trim in plan.trims] == ["AAA", "BBB"]
    assert plan.notes == (
        "sector Tech: value 3750.00 → 950.00, limit 1000.00 (10 % of the active pool)",
    )


def test_sector_trim_breaks_ties_by_symbol() -> None:
    holdings = [_holding(1, "ZZZ", 10, "100"), _holding(2, "MMM", 10, "100")]

    plan = plan_rebalance(holdings, _limits(position="1", sector="0.15"))

    assert _sold(plan) == {"MMM": D("5")}


def test_sector_trim_rounds_up_to_whole_units() -> None:
    holdings = [_holding(1, "AAA", 30, "70")]  # 2100

    plan = plan_rebalance(holdings, _limits(position="1", sector="0.20"))

    # 100 over at 70 a unit: 1.43 → 2 units, leaving 28 × 70 = 1960.
    assert _sold(plan) == {"AAA": D("2")}


# Pool exposure limit -----------------------------------------------------------------------------


def _hot(a_threshold: str) -> list[RebalanceHolding]:
    return [
        _holding(1, "AAA", 10, "100", risk_threshold=a_threshold),  # 10 × (100 − threshold)
        _holding(2, "BBB", 20, "50", sector="Energy", risk_threshold="45"),  # 20 × 5 = 100
        _holding(3, "CCC", 5, "80", sector="Health"),  # no threshold: no exposure
        _holding(4, "DDD", 5, "30", sector="Health", risk_threshold="35"),  # under it: 0
    ]


@pytest.mark.parametrize(
    ("a_threshold", "expected"),
    [
        pytest.param("90", {}, id="exactly-at-cap"),  # 100 + 100 = 200
        pytest.param("90.01", {}, id="just-below"),  # 99.9 + 100
        # 110 + 100 = 210: 10 over, AAA (11 a unit, the largest) sells ceil(10 / 11) = 1.
        pytest.param("89", {"AAA": D("1")}, id="just-over"),
    ],
)
def test_pool_exposure_limit_on_both_sides(a_threshold: str, expected: dict[str, Decimal]) -> None:
    plan = plan_rebalance(_hot(a_threshold), _limits(position="1", sector="1", heat="0.02"))

    assert _sold(plan) == expected
    assert all(trim.reason == "pool_exposure_limit" for trim in plan.trims)


def test_pool_exposure_trims_largest_exposure_per_unit_first() -> None:
    plan = plan_rebalance(_hot("89"), _limits(position="1", sector="1", heat="0.005"))

    # Cap 50, exposure 210: AAA (11 a unit) sells all 10 (110), then BBB (5 a unit) 50 / 5 = 10.
    assert _sold(plan) == {"AAA": D("10"), "BBB": D("10")}
    assert plan.notes == ("pool exposure 210.00 → 50.00, cap 50.00 (0.5 % of the active pool)",)


# Merging and the rest ----------------------------------------------------------------------------


def test_trims_of_one_commitment_by_several_rules_merge() -> None:
    holdings = [
        _holding(1, "AAA", 15, "100", risk_threshold="90"),  # 1500, exposure 150
        _holding(2, "BBB", 10, "80", risk_threshold="79"),  # 800, exposure 10
    ]
    limits = _limits(position="0.10", sector="0.15", heat="0.01")

    plan = plan_rebalance(holdings, limits)

    # Position: AAA 1500 → 1000 (5 units). Sector: 1800 → limit 1500, AAA (1000) is the larger,
    # sells 3 → 700. Exposure: 7 × 10 + 10 × 1 = 80, within the cap 100: no third reason.
    (trim,) = plan.trims
    assert trim.symbol == "AAA"
    assert trim.units == D("8")
    assert trim.reason == "position_limit,sector_limit"
    assert "position limit 1000.00" in trim.note
    assert "sector limit 1500.00" in trim.note


def test_merged_trims_never_exceed_the_units_held() -> None:
    holdings = [
        _holding(1, "AAA", 7, "100", risk_threshold="90"),
        _holding(2, "BBB", 3, "40", sector="Energy", risk_threshold="30"),
    ]

    plan = plan_rebalance(holdings, _limits(position="0", sector="0", heat="0"))

    assert _sold(plan) == {"AAA": D("7"), "BBB": D("3")}
    assert [trim.reason for trim in plan.trims] == ["position_limit", "position_limit"]


def test_all_three_reasons_join_in_rule_order() -> None:
    holdings = [
        _holding(1, "AAA", 20, "100", risk_threshold="50"),  # 2000, exposure 1000
        _holding(2, "BBB", 10, "100", risk_threshold="99"),  # 1000, exposure 10
    ]
    limits = _limits(position="0.15", sector="0.20", heat="0.02")

    plan = plan_rebalance(holdings, limits)

    # Position: AAA 2000 → 1500 (5). Sector: 2500 → 2000, AAA sells 5 → 1000.
    # Exposure: 10 × 50 + 10 × 1 = 510 over the cap 200: AAA sells ceil(310 / 50) = 7.
    trims = {trim.symbol: trim for trim in plan.trims}
    assert trims["AAA"].units == D("17")
    assert trims["AAA"].reason == "position_limit,sector_limit,pool_exposure_limit"
    assert "BBB" not in trims


def test_nothing_to_do() -> None:
    holdings = [_holding(1, "AAA", 5, "100", risk_threshold="95")]

    plan = plan_rebalance(holdings, LIMITS)

    assert plan.trims == ()
    assert len(plan.notes) == 1
    assert plan.notes[0].startswith("nothing to rebalance")


def test_no_holdings() -> None:
    assert plan_rebalance([], LIMITS).trims == ()


@pytest.mark.parametrize("pool", ["0", "-100"])
def test_active_pool_not_positive_trims_nothing(pool: str) -> None:
    plan = plan_rebalance([_holding(1, "AAA", 100, "100")], _limits(pool=pool))

    assert plan.trims == ()
    assert "≤ 0" in plan.notes[0]


def test_trims_are_ordered_by_symbol_then_id() -> None:
    holdings = [
        _holding(3, "ZZZ", 20, "100", sector="A"),
        _holding(2, "AAA", 20, "100", sector="B"),
        _holding(1, "AAA", 20, "100", sector="C"),
    ]

    plan = plan_rebalance(holdings, LIMITS)

    assert [(trim.symbol, trim.commitment_id) for trim in plan.trims] == [
        ("AAA", 1),
        ("AAA", 2),
        ("ZZZ", 3),
    ]


def test_zero_units_are_ignored() -> None:
    assert plan_rebalance([_holding(1, "AAA", 0, "100")], _limits(position="0")).trims == ()


@pytest.mark.parametrize(
    ("holdings", "limits", "message"),
    [
        pytest.param([_holding(1, "AAA", "1.5", "10")], LIMITS, "whole", id="fractional-units"),
        pytest.param([_holding(1, "AAA", -1, "10")], LIMITS, "whole", id="negative-units"),
        pytest.param([_holding(1, "AAA", 1, "-10")], LIMITS, "current_value", id="negative-value"),
        pytest.param(
            [_holding(1, "AAA", 1, "10"), _holding(1, "BBB", 1, "10")],
            LIMITS,
            "more than once",
            id="duplicate-id",
        ),
        pytest.param([], _limits(position="-0.1"), "max_position_pct", id="negative-position"),
        pytest.param([], _limits(sector="-0.1"), "max_sector_pct", id="negative-sector"),
        pytest.param([], _limits(heat="-0.1"), "max_portfolio_heat", id="negative-heat"),
    ],
)
def test_invalid_inputs_raise(
    holdings: list[RebalanceHolding], limits: RebalanceLimits, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        plan_rebalance(holdings, limits)


# Properties --------------------------------------------------------------------------------------

fractions = st.decimals(min_value="0", max_value="0.5", places=3)


@st.composite
def holdings_lists(draw: st.DrawFn) -> list[RebalanceHolding]:
    count = draw(st.integers(min_value=0, max_value=8))
    holdings = []
    for commitment_id in range(1, count + 1):
        value = draw(st.decimals(min_value="0.01", max_value="500", places=2))
        threshold = draw(st.none() | st.decimals(min_value="0", max_value=value * 2, places=2))
        holdings.append(
            RebalanceHolding(
                commitment_id=commitment_id,
                symbol=draw(st.sampled_from(["AAA", "BBB", "CCC", "DDD"])),
                sector=draw(st.sampled_from(["Tech", "Energy", "Health"])),
                units=D(draw(st.integers(min_value=0, max_value=300))),
                current_value=value,
                risk_threshold=threshold,
            )
        )
    return holdings


@settings(max_examples=300, deadline=None)
@given(
    holdings=holdings_lists(),
    position=fractions,
    sector=fractions,
    heat=fractions,
    pool=st.decimals(min_value="100", max_value="100000", places=2),
)
def test_plan_brings_every_limit_back_within(
    holdings: list[RebalanceHolding],
    position: Decimal,
    sector: Decimal,
    heat: Decimal,
    pool: Decimal,
) -> None:
    limits = RebalanceLimits(position, sector, heat, pool)

    plan = plan_rebalance(holdings, limits)

    by_id = {h.commitment_id: h for h in holdings}
    remaining = {h.commitment_id: h.units for h in holdings}
    assert len({trim.commitment_id for trim in plan.trims}) == len(plan.trims)
    for trim in plan.trims:
        held = by_id[trim.commitment_id].units
        assert D(0) < trim.units <= held
        assert trim.units == trim.units.to_integral_value()
        remaining[trim.commitment_id] -= trim.units

    def value(h: RebalanceHolding) -> Decimal:
        return remaining[h.commitment_id] * h.current_value

    def exposure(h: RebalanceHolding) -> Decimal:
        if h.risk_threshold is None:
            return D(0)
        return remaining[h.commitment_id] * max(h.current_value - h.risk_threshold, D(0))

    # "At or under the limit, or every unit sold": with limits ≥ 0 a fully sold commitment, sector
    # or pool is at 0, so the plain comparison covers both branches.
    for h in holdings:
        assert value(h) <= position * pool or remaining[h.commitment_id] == 0
    for name in {h.sector for h in holdings}:
        members = [h for h in holdings if h.sector == name]
        total = sum((value(h) for h in members), D(0))
        assert total <= sector * pool or all(remaining[h.commitment_id] == 0 for h in members)
    offending = [h for h in holdings if exposure(h) > 0]
    total_exposure = sum((exposure(h) for h in holdings), D(0))
    assert total_exposure <= heat * pool or not offending
    assert [(t.symbol, t.commitment_id) for t in plan.trims] == sorted(
        (t.symbol, t.commitment_id) for t in plan.trims
    )
