"""Tests of portfolio.risk_levels: initial risk threshold and gain target from the ATR."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from portfolio.risk_levels import RiskLevels, compute_initial_levels

D = Decimal


@pytest.mark.parametrize(
    ("entry", "atr", "multiplier", "ratio", "expected_stop", "expected_target"),
    [
        pytest.param("100", "2", "2.0", "1.5", "96.0000", "106.0000", id="moderate-tier"),
        pytest.param("100", "2", "1.5", "2.0", "97.0000", "106.0000", id="conservative-tier"),
        pytest.param("100", "2", "2.5", "1.2", "95.0000", "106.0000", id="aggressive-tier"),
        # 52.37 − 1.2345 × 2 = 49.901; 52.37 + 2.469 × 1.5 = 56.0735.
        pytest.param("52.37", "1.2345", "2.0", "1.5", "49.9010", "56.0735", id="fractional"),
        # 10 − 3.3333 × 1.5 = 5.00005: the stop rounds down, away from the entry.
        pytest.param("10", "3.3333", "1.5", "2.0", "5.0000", "20.0000", id="stop-rounds-down"),
        # 10 + (10 − 9.9999) × 1.5 = 10.00015: the target rounds up, away from the entry.
        pytest.param("10", "0.00005", "2.0", "1.5", "9.9999", "10.0002", id="target-rounds-up"),
        pytest.param("10", "5", "2.0", "1.5", "0.0000", "25.0000", id="stop-exactly-zero"),
        pytest.param("10", "8", "2.0", "1.5", "0.0000", "25.0000", id="stop-floored-at-zero"),
        pytest.param("100", "0", "2.0", "1.5", "100.0000", "100.0000", id="zero-atr"),
    ],
)
def test_compute_initial_levels(
    entry: str,
    atr: str,
    multiplier: str,
    ratio: str,
    expected_stop: str,
    expected_target: str,
) -> None:
    levels = compute_initial_levels(D(entry), D(atr), D(multiplier), D(ratio))

    assert levels == RiskLevels(risk_threshold=D(expected_stop), gain_target=D(expected_target))
    assert levels.risk_threshold.as_tuple().exponent == -4
    assert levels.gain_target.as_tuple().exponent == -4


@pytest.mark.parametrize(
    ("entry", "atr", "multiplier", "ratio", "message"),
    [
        pytest.param("0", "2", "2", "1.5", "entry_value", id="entry-zero"),
        pytest.param("-1", "2", "2", "1.5", "entry_value", id="entry-negative"),
        pytest.param("100", "-0.0001", "2", "1.5", "atr", id="atr-negative"),
        pytest.param("100", "2", "0", "1.5", "stop_loss_atr_multiplier", id="multiplier-zero"),
        pytest.param("100", "2", "-1", "1.5", "stop_loss_atr_multiplier", id="multiplier-neg"),
        pytest.param("100", "2", "2", "0", "reward_risk_ratio", id="ratio-zero"),
        pytest.param("100", "2", "2", "-1", "reward_risk_ratio", id="ratio-negative"),
    ],
)
def test_compute_initial_levels_rejects_invalid_input(
    entry: str, atr: str, multiplier: str, ratio: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        compute_initial_levels(D(entry), D(atr), D(multiplier), D(ratio))


def test_risk_levels_is_frozen() -> None:
    levels = compute_initial_levels(D("100"), D("2"), D("2"), D("1.5"))

    with pytest.raises(FrozenInstanceError):
        levels.risk_threshold = D("1")  # type: ignore[misc]


prices = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=4)
positive_atrs = st.decimals(min_value=D("0.0001"), max_value=D("10000"), places=4)
multipliers = st.decimals(min_value=D("0.5"), max_value=D("5"), places=2)
ratios = st.decimals(min_value=D("0.5"), max_value=D("5"), places=2)


@settings(max_examples=500, deadline=None)
@given(entry=prices, atr=positive_atrs, multiplier=multipliers, ratio=ratios)
def test_stop_below_entry_below_target_when_atr_positive(
    entry: Decimal, atr: Decimal, multiplier: Decimal, ratio: Decimal
) -> None:
    levels = compute_initial_levels(entry, atr, multiplier, ratio)
    assume(levels.risk_threshold > 0)

    assert levels.risk_threshold < entry < levels.gain_target


@settings(max_examples=300, deadline=None)
@given(entry=prices, atr=positive_atrs, multiplier=multipliers, ratio=ratios)
def test_levels_keep_the_reward_risk_ratio_within_rounding(
    entry: Decimal, atr: Decimal, multiplier: Decimal, ratio: Decimal
) -> None:
    levels = compute_initial_levels(entry, atr, multiplier, ratio)

    assert levels.risk_threshold >= 0
    assert levels.risk_threshold <= max(entry - atr * multiplier, D(0))
    reward = levels.gain_target - entry
    risk = entry - levels.risk_threshold
    assert D(0) <= reward - risk * ratio < D("0.0001")
