"""Tests of portfolio.reserve: profit siphoning, high-water mark, emergency liquidation.

Source, "Reserve Pool" (siphon 20 %, high water 30 %); emergency threshold 25 % (EngineConfig
default). Pure: no database.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portfolio.reserve import (
    RESERVE_QUANTUM,
    ReserveConfig,
    SiphonResult,
    emergency_liquidate,
    is_high_water,
    reserve_fraction,
    should_emergency_liquidate,
    siphon_profit,
)

D = Decimal
CONFIG = ReserveConfig()


def test_config_defaults_are_the_source_numbers() -> None:
    assert ReserveConfig() == ReserveConfig(
        siphon_pct=D("0.20"), high_water_pct=D("0.30"), emergency_drawdown_pct=D("0.25")
    )
    with pytest.raises(FrozenInstanceError):
        CONFIG.siphon_pct = D("1")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("gain", "balance", "amount", "balance_after"),
    [
        pytest.param("100", "0", "20.0000", "20.0000", id="100-gain-siphons-20"),
        pytest.param("100", "500", "20.0000", "520.0000", id="adds-to-the-balance"),
        pytest.param("0.0005", "10", "0.0001", "10.0001", id="smallest-amount"),
        # 33.33333 × 0.2 = 6.666666: rounded down, never more than the fraction.
        pytest.param("33.33333", "0", "6.6666", "6.6666", id="rounds-down"),
        pytest.param("0.00099", "0", "0.0001", "0.0001", id="0.000198-rounds-down-to-0.0001"),
    ],
)
def test_siphon_profit_positive_gain(
    gain: str, balance: str, amount: str, balance_after: str
) -> None:
    result = siphon_profit(D(gain), D(balance), CONFIG)

    assert result is not None
    assert result.amount == D(amount)
    assert result.amount.as_tuple().exponent == -4
    assert result.balance_after == D(balance_after)
    assert str(result.amount) in result.note


@pytest.mark.parametrize(
    "gain",
    [
        pytest.param("-100", id="loss-never-reduces-the-reserve"),
        pytest.param("0", id="zero-gain"),
        pytest.param("-0.0001", id="smallest-loss"),
        pytest.param("0.0004", id="amount-rounds-to-zero"),
    ],
)
def test_siphon_profit_nothing_to_siphon(gain: str) -> None:
    assert siphon_profit(D(gain), D("500"), CONFIG) is None


def test_siphon_profit_uses_the_configured_fraction() -> None:
    result = siphon_profit(D("100"), D("0"), ReserveConfig(siphon_pct=D("0.35")))

    assert result == SiphonResult(
        amount=D("35.0000"),
        balance_after=D("35.0000"),
        note="profit siphon: 0.35 of realized gain 100 = 35.0000; reserve 0 → 35.0000",
    )


@settings(max_examples=300)
@given(
    gain=st.decimals(min_value=-(10**6), max_value=10**6, places=6),
    balance=st.decimals(min_value=0, max_value=10**6, places=4),
    pct=st.decimals(min_value=0, max_value=1, places=4),
)
def test_siphon_never_takes_more_than_the_fraction(
    gain: Decimal, balance: Decimal, pct: Decimal
) -> None:
    result = siphon_profit(gain, balance, ReserveConfig(siphon_pct=pct))

    if gain <= 0:
        assert result is None
        return
    if result is None:
        assert gain * pct < RESERVE_QUANTUM
        return
    assert D(0) < result.amount <= gain * pct
    assert gain * pct - result.amount < RESERVE_QUANTUM
    assert result.balance_after == balance + result.amount


@pytest.mark.parametrize(
    ("reserve", "total", "high"),
    [
        pytest.param("30000", "100000", False, id="exactly-30pct-not-high-water"),
        pytest.param("30000.01", "100000", True, id="just-above-30pct"),
        pytest.param("29999.99", "100000", False, id="just-below-30pct"),
        pytest.param("100", "0", False, id="total-zero"),
        pytest.param("100", "-5", False, id="total-negative"),
    ],
)
def test_is_high_water(reserve: str, total: str, high: bool) -> None:
    assert is_high_water(D(reserve), D(total), CONFIG) is high


@pytest.mark.parametrize(
    ("reserve", "total", "fraction"),
    [
        pytest.param("25000", "100000", "0.25", id="quarter"),
        pytest.param("0", "100000", "0", id="empty-reserve"),
        pytest.param("100", "0", "0", id="total-zero"),
        pytest.param("100", "-1", "0", id="total-negative"),
    ],
)
def test_reserve_fraction(reserve: str, total: str, fraction: str) -> None:
    assert reserve_fraction(D(reserve), D(total)) == D(fraction)


@pytest.mark.parametrize(
    ("decline", "reserve", "liquidate"),
    [
        pytest.param("0.25", "1000", False, id="exactly-25pct-no"),
        pytest.param("0.2501", "1000", True, id="just-above-25pct"),
        pytest.param("0.2499", "1000", False, id="just-below-25pct"),
        pytest.param("0.60", "0", False, id="nothing-to-release"),
        pytest.param("0.60", "0.0001", True, id="smallest-reserve"),
    ],
)
def test_should_emergency_liquidate(decline: str, reserve: str, liquidate: bool) -> None:
    assert should_emergency_liquidate(D(decline), D(reserve), CONFIG) is liquidate


def test_should_emergency_liquidate_uses_the_configured_threshold() -> None:
    config = ReserveConfig(emergency_drawdown_pct=D("0.10"))

    assert should_emergency_liquidate(D("0.11"), D("1000"), config)
    assert not should_emergency_liquidate(D("0.10"), D("1000"), config)


@pytest.mark.parametrize(
    ("reserve", "released"),
    [
        pytest.param("12345.6789", "12345.6789", id="whole-balance"),
        pytest.param("0", "0", id="empty"),
        pytest.param("-5", "0", id="never-negative"),
    ],
)
def test_emergency_liquidate_releases_the_whole_balance(reserve: str, released: str) -> None:
    assert emergency_liquidate(D(reserve)) == D(released)
