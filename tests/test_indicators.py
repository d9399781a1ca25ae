"""Tests of portfolio.indicators: Wilder's average true range and the ATR change fraction."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portfolio.indicators import atr_change_fraction, average_true_range

D = Decimal

# A small series for period 3, every step worked out by hand below.
#   bar  high   low    close   previous close  true range
#   0    10.00  9.00   9.50    -               -  (only provides a previous close)
#   1    10.20  9.40   10.00   9.50            max(0.80, 0.70, 0.10) = 0.80
#   2    10.50  9.80   10.40   10.00           max(0.70, 0.50, 0.20) = 0.70
#   3    10.60  10.10  10.20   10.40           max(0.50, 0.20, 0.30) = 0.50
#   4    11.50  11.00  11.40   10.20 gap up    max(0.50, 1.30, 0.80) = 1.30
#   5    10.00  9.70   9.80    11.40 gap down  max(0.30, 1.40, 1.70) = 1.70
# seed (bars 1–3)  = (0.80 + 0.70 + 0.50) / 3        = 2/3     = 0.66666…  → 0.6667
# after bar 4      = (2/3 × 2 + 1.30) / 3 = 79/90              = 0.87777…  → 0.8778
# after bar 5      = (79/90 × 2 + 1.70) / 3 = 311/270          = 1.151851… → 1.1519
HAND_HIGHS = [D("10.00"), D("10.20"), D("10.50"), D("10.60"), D("11.50"), D("10.00")]
HAND_LOWS = [D("9.00"), D("9.40"), D("9.80"), D("10.10"), D("11.00"), D("9.70")]
HAND_CLOSES = [D("9.50"), D("10.00"), D("10.40"), D("10.20"), D("11.40"), D("9.80")]


@pytest.mark.parametrize(
    ("bars", "expected"),
    [
        pytest.param(3, None, id="period-bars-is-too-few"),
        pytest.param(4, D("0.6667"), id="period-plus-one-bars-gives-the-seed"),
        pytest.param(5, D("0.8778"), id="gap-up-uses-the-previous-close"),
        pytest.param(6, D("1.1519"), id="gap-down-uses-the-previous-close"),
    ],
)
def test_average_true_range_matches_the_hand_computation(
    bars: int, expected: Decimal | None
) -> None:
    result = average_true_range(HAND_HIGHS[:bars], HAND_LOWS[:bars], HAND_CLOSES[:bars], period=3)

    assert result == expected
    if expected is not None:
        assert result.as_tuple().exponent == -4


def float_wilder_atr(highs: list[float], lows: list[float], closes: list[float], period: int):
    """A straightforward float re-implementation of Wilder's ATR, for comparison."""
    true_ranges = []
    for i in range(1, len(closes)):
        true_ranges.append(
            max(highs[i] - lows[i], abs(highs[i] - closes[i - 1]), abs(lows[i] - closes[i - 1]))
        )
    atr = sum(true_ranges[:period]) / period
    for true_range in true_ranges[period:]:
        atr = (atr * (period - 1) + true_range) / period
    return atr


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_period_14_matches_a_float_implementation_on_a_longer_series(seed: int) -> None:
    rng = random.Random(seed)
    highs, lows, closes = [], [], []
    close = 100.0
    for _ in range(80):
        open_ = close * (1 + rng.gauss(0, 0.015))  # overnight gaps
        close = round(open_ * (1 + rng.gauss(0, 0.01)), 2)
        highs.append(round(max(open_, close) * (1 + abs(rng.gauss(0, 0.005))), 2))
        lows.append(round(min(open_, close) * (1 - abs(rng.gauss(0, 0.005))), 2))
        closes.append(close)

    result = average_true_range(highs, lows, closes, period=14)

    expected = float_wilder_atr(highs, lows, closes, period=14)
    assert result is not None
    assert float(result) == pytest.approx(expected, abs=0.00005 + 1e-9)


def test_default_period_is_14() -> None:
    highs = [D(11 + i % 3) for i in range(15)]
    lows = [D(9 + i % 3) for i in range(15)]
    closes = [D(10 + i % 3) for i in range(15)]

    assert average_true_range(highs[:14], lows[:14], closes[:14]) is None
    assert average_true_range(highs, lows, closes) is not None


@pytest.mark.parametrize(
    ("high", "expected"),
    [
        pytest.param("1.00025", D("0.0002"), id="half-rounds-to-even-down"),
        pytest.param("1.00035", D("0.0004"), id="half-rounds-to-even-up"),
        pytest.param("1.000251", D("0.0003"), id="above-half-rounds-up"),
    ],
)
def test_result_is_quantized_half_even(high: str, expected: Decimal) -> None:
    # Period 1: the ATR is the last true range, here high − low.
    result = average_true_range(
        [D("1.0001"), D(high)], [D("1.0000"), D("1.0000")], [D("1.0000"), D("1.0000")], period=1
    )

    assert result == expected


def test_numbers_are_read_through_their_text() -> None:
    as_decimals = average_true_range(HAND_HIGHS, HAND_LOWS, HAND_CLOSES, period=3)

    as_floats = average_true_range(
        [float(x) for x in HAND_HIGHS],
        [float(x) for x in HAND_LOWS],
        [float(x) for x in HAND_CLOSES],
        period=3,
    )
    as_strings = average_true_range(
        [str(x) for x in HAND_HIGHS], [str(x) for x in HAND_LOWS], [str(x) for x in HAND_CLOSES], 3
    )

    assert as_decimals == as_floats == as_strings == D("1.1519")


@pytest.mark.parametrize(
    ("highs", "lows", "closes", "period", "message"),
    [
        pytest.param([1, 2], [1], [1, 2], 1, "length", id="length-mismatch"),
        pytest.param([1, 2], [1, 2], [1, 2], 0, "period", id="period-zero"),
        pytest.param([1, float("nan")], [1, 1], [1, 1], 1, "finite", id="nan"),
        pytest.param([1, "x"], [1, 1], [1, 1], 1, "not a number", id="not-a-number"),
        pytest.param([1, 2], [1, 3], [1, 2], 1, "below low", id="high-below-low"),
    ],
)
def test_average_true_range_rejects_bad_input(highs, lows, closes, period, message) -> None:
    with pytest.raises(ValueError, match=message):
        average_true_range(highs, lows, closes, period=period)


bars = st.lists(
    st.tuples(
        st.decimals(min_value=1, max_value=1000, places=2),
        st.decimals(min_value=0, max_value=50, places=2),
        st.floats(min_value=0, max_value=1),
    ),
    min_size=2,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(bars=bars, period=st.integers(min_value=1, max_value=10))
def test_average_true_range_lies_within_the_true_ranges(bars, period: int) -> None:
    lows = [low for low, _, _ in bars]
    highs = [low + spread for low, spread, _ in bars]
    closes = [
        (low + spread * Decimal(str(round(position, 2)))).quantize(D("0.01"))
        for low, spread, position in bars
    ]

    result = average_true_range(highs, lows, closes, period=period)

    if len(bars) < period + 1:
        assert result is None
        return
    true_ranges = [
        max(highs[i] - lows[i], abs(highs[i] - closes[i - 1]), abs(lows[i] - closes[i - 1]))
        for i in range(1, len(bars))
    ]
    assert min(true_ranges) - D("0.00005") <= result <= max(true_ranges) + D("0.00005")


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        pytest.param(D("2.00"), D("2.20"), D("0.1"), id="up-10-percent"),
        pytest.param(D("2.00"), D("1.80"), D("0.1"), id="down-10-percent"),
        pytest.param(D("2.00"), D("2.21"), D("0.105"), id="just-above-10-percent"),
        pytest.param(D("2.00"), D("2.19"), D("0.095"), id="just-below-10-percent"),
        pytest.param(D("2.00"), D("2.00"), D("0"), id="unchanged"),
        pytest.param(D("1.50"), D("3.00"), D("1"), id="doubled"),
        pytest.param(D("3"), D("1"), D("2") / D("3"), id="repeating-fraction"),
        pytest.param(D("1.5"), D("0"), D("1"), id="dropped-to-zero"),
    ],
)
def test_atr_change_fraction(previous: Decimal, current: Decimal, expected: Decimal) -> None:
    assert abs(atr_change_fraction(previous, current) - expected) < D("1e-25")


@pytest.mark.parametrize(
    ("previous", "current"),
    [
        pytest.param(D("0"), D("1"), id="previous-zero"),
        pytest.param(D("-1"), D("1"), id="previous-negative"),
        pytest.param(D("1"), D("-0.5"), id="current-negative"),
    ],
)
def test_atr_change_fraction_rejects_non_positive_previous(
    previous: Decimal, current: Decimal
) -> None:
    with pytest.raises(ValueError, match="ATR"):
        atr_change_fraction(previous, current)
