"""Tests of portfolio.metrics: success rate, daily returns, Sharpe ratio, drawdowns.

Source, "_performance_loop" (success rate, risk-adjusted return ratio, peak-to-trough decline).
Pure: no database; expected figures are computed by hand in the comments.
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portfolio.metrics import (
    current_drawdown,
    daily_returns,
    peak_to_trough,
    sharpe_ratio,
    success_rate,
)

D = Decimal


@pytest.mark.parametrize(
    ("gains", "rate"),
    [
        pytest.param([], None, id="nothing-closed"),
        pytest.param(["10", "-5", "3", "-1", "0"], "0.4", id="2-of-5-zero-is-no-success"),
        pytest.param(["10", "5", "-3"], D(2) / D(3), id="2-of-3"),
        pytest.param(["-1", "-2"], "0", id="all-lost"),
        pytest.param(["0"], "0", id="flat-is-not-a-gain"),
        pytest.param(["0.0001"], "1", id="smallest-gain"),
    ],
)
def test_success_rate(gains: list[str], rate: str | Decimal | None) -> None:
    result = success_rate([D(g) for g in gains])

    assert result == (None if rate is None else D(rate))


def test_daily_returns_are_simple_returns() -> None:
    # 100 → 101: +1 %; 101 → 100.495: −0.5 %; 100.495 → 102.5049: +2 %; then flat.
    returns = daily_returns([D("100"), D("101"), D("100.495"), D("102.5049"), D("102.5049")])

    assert returns == pytest.approx([0.01, -0.005, 0.02, 0.0])


@pytest.mark.parametrize(
    "values",
    [pytest.param([], id="empty"), pytest.param([D("100")], id="single")],
)
def test_daily_returns_need_two_values(values: list[Decimal]) -> None:
    assert daily_returns(values).size == 0


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([D("100"), D("0")], id="zero"),
        pytest.param([D("-1"), D("100")], id="negative"),
        pytest.param([100.0, float("nan")], id="nan"),
        pytest.param([D("0")], id="single-zero"),
    ],
)
def test_daily_returns_reject_invalid_values(values: list) -> None:
    with pytest.raises(ValueError):
        daily_returns(values)


def test_sharpe_ratio_against_a_hand_computed_series() -> None:
    # returns 0.01, −0.005, 0.02, 0.0
    # mean = 0.025 / 4 = 0.00625
    # deviations 0.00375, −0.01125, 0.01375, −0.00625
    # squares 0.0000140625 + 0.0001265625 + 0.0001890625 + 0.0000390625 = 0.00036875
    # sample variance = 0.00036875 / 3 = 0.000122916…; std = 0.0110867789…
    # daily ratio = 0.00625 / 0.0110867789 = 0.5637345…; × √252 (15.8745079) = 8.949008…
    ratio = sharpe_ratio(np.array([0.01, -0.005, 0.02, 0.0]))

    assert ratio == pytest.approx(8.949008, rel=1e-6)


def test_sharpe_ratio_subtracts_the_risk_free_return() -> None:
    # Excess returns 0.009, −0.006, 0.019, −0.001: mean 0.00525, the same std 0.0110867789…
    # 0.00525 / 0.0110867789 × 15.8745079 = 7.517167…
    ratio = sharpe_ratio(np.array([0.01, -0.005, 0.02, 0.0]), risk_free_daily=0.001)

    assert ratio == pytest.approx(7.517167, rel=1e-6)


def test_sharpe_ratio_annualizes_with_the_given_periods() -> None:
    # Same series, 12 periods a year: 0.5637345 × √12 (3.4641016) = 1.952833…
    ratio = sharpe_ratio(np.array([0.01, -0.005, 0.02, 0.0]), periods_per_year=12)

    assert ratio == pytest.approx(1.952833, rel=1e-6)


@pytest.mark.parametrize(
    "returns",
    [
        pytest.param([], id="none"),
        pytest.param([0.01], id="one-return"),
        pytest.param([0.01, 0.01, 0.01], id="zero-std"),
        pytest.param([0.0, 0.0], id="all-flat"),
    ],
)
def test_sharpe_ratio_undefined(returns: list[float]) -> None:
    assert sharpe_ratio(np.array(returns, dtype=float)) is None


def test_sharpe_ratio_of_two_returns_is_defined() -> None:
    # 0.02 and 0.0: mean 0.01, std √((0.0001 + 0.0001) / 1) = 0.0141421; 0.7071068 × √252.
    ratio = sharpe_ratio(np.array([0.02, 0.0]))

    assert ratio == pytest.approx(math.sqrt(0.5) * math.sqrt(252))


def test_sharpe_ratio_of_daily_returns_end_to_end() -> None:
    values = [D("100"), D("101"), D("100.495"), D("102.5049"), D("102.5049")]

    assert sharpe_ratio(daily_returns(values)) == pytest.approx(8.949008, rel=1e-6)


@pytest.mark.parametrize(
    ("values", "maximum", "current"),
    [
        # Peak 120, trough 90: 30 / 120 = 0.25; then peak 130, last 104: 26 / 130 = 0.2.
        pytest.param(["100", "120", "90", "130", "104"], "0.25", "0.2", id="hand-computed"),
        pytest.param(["100", "110", "120"], "0", "0", id="rising"),
        pytest.param([], "0", "0", id="empty"),
        pytest.param(["100"], "0", "0", id="single"),
        pytest.param(["100", "100", "100"], "0", "0", id="flat"),
        # 100 → 80: 0.2; recovery to 100 leaves no current decline.
        pytest.param(["100", "80", "100"], "0.2", "0", id="recovered"),
        # Peak 200, last 150: 50 / 200 = 0.25 both.
        pytest.param(["100", "200", "150"], "0.25", "0.25", id="in-the-trough"),
    ],
)
def test_drawdowns(values: list[str], maximum: str, current: str) -> None:
    series = [D(v) for v in values]

    assert peak_to_trough(series) == D(maximum)
    assert current_drawdown(series) == D(current)


@pytest.mark.parametrize("function", [peak_to_trough, current_drawdown])
@pytest.mark.parametrize(
    "values",
    [pytest.param([D("100"), D("0")], id="zero"), pytest.param([D("-5")], id="negative")],
)
def test_drawdowns_reject_values_at_or_below_zero(function, values: list[Decimal]) -> None:
    with pytest.raises(ValueError):
        function(values)


pool_values = st.lists(
    st.decimals(min_value=D("0.01"), max_value=D("1000000000"), places=2), max_size=40
)


@settings(max_examples=300)
@given(values=pool_values)
def test_drawdown_is_a_fraction_below_one(values: list[Decimal]) -> None:
    maximum = peak_to_trough(values)
    current = current_drawdown(values)

    assert D(0) <= maximum < 1
    assert D(0) <= current < 1
    assert current <= maximum


@settings(max_examples=200)
@given(
    basis_points=st.lists(st.integers(min_value=-5000, max_value=5000), min_size=2, max_size=30),
    scale=st.integers(min_value=1, max_value=10),
)
def test_sharpe_ratio_is_scale_invariant(basis_points: list[int], scale: int) -> None:
    returns = np.array(basis_points, dtype=float) / 10_000

    base = sharpe_ratio(returns)
    scaled = sharpe_ratio(returns * scale)

    if base is None or scaled is None:
        return
    assert scaled == pytest.approx(base, rel=1e-6, abs=1e-9)
