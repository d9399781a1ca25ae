"""Volatility indicators for the risk threshold levels: Wilder's average true range (ATR).

Implements the ATR inputs of the risk threshold monitor in "The Decision Execution Engine Loop" of
the source document (the RiskThresholdManager "computes
initial levels from ATR ... re-evaluates them when volatility shifts materially (ATR change >
10%)") and of the pool exposure estimate in "Pool Exposure Check and Unit Rounding" (new heat =
units × ATR × multiplier, DESIGN.md "Commitment sizer"). The design (EngineConfig,
"Loops") sets the ATR period to 14 and the re-evaluation threshold to a 10 % change; the threshold
itself is applied by the caller.

All arithmetic is in ``Decimal``.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext

__all__ = ["ATR_QUANTUM", "atr_change_fraction", "average_true_range"]

ATR_QUANTUM = Decimal("0.0001")
_PRECISION = 34  # significant digits for intermediate results, independent of the caller's context

Number = Decimal | int | float | str


def average_true_range(
    highs: Sequence[Number],
    lows: Sequence[Number],
    closes: Sequence[Number],
    period: int = 14,
) -> Decimal | None:
    """Wilder's average true range over the whole series, in price units (same as the closes).

    ``highs``, ``lows`` and ``closes`` are the bars oldest → newest, as ``Decimal`` or anything
    ``Decimal(str(x))`` reads. The true range of bar i (i ≥ 1) is
    max(high − low, |high − previous close|, |low − previous close|); the first bar only provides a
    previous close. The seed is the simple mean of the first ``period`` true ranges; each later true
    range is folded in as ATR = (ATR_prev × (period − 1) + TR) / period.

    Returns the ATR quantized to 4 decimal places (ROUND_HALF_EVEN), or None with fewer than
    ``period + 1`` bars. Raises ``ValueError`` on sequences of different lengths, ``period`` < 1, a
    non-finite value or a bar whose high is below its low.
    """
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    if not len(highs) == len(lows) == len(closes):
        raise ValueError(
            f"highs, lows and closes differ in length: {len(highs)}, {len(lows)}, {len(closes)}"
        )
    if len(closes) < period + 1:
        return None

    high_values = [_to_decimal(value, "high") for value in highs]
    low_values = [_to_decimal(value, "low") for value in lows]
    close_values = [_to_decimal(value, "close") for value in closes]
    for index, (high, low) in enumerate(zip(high_values, low_values, strict=True)):
        if high < low:
            raise ValueError(f"bar {index}: high {high} is below low {low}")

    with localcontext() as context:
        context.prec = _PRECISION
        true_ranges = [
            max(high - low, abs(high - previous_close), abs(low - previous_close))
            for high, low, previous_close in zip(
                high_values[1:], low_values[1:], close_values[:-1], strict=True
            )
        ]
        atr = sum(true_ranges[:period], Decimal(0)) / period
        for true_range in true_ranges[period:]:
            atr = (atr * (period - 1) + true_range) / period
        return atr.quantize(ATR_QUANTUM, rounding=ROUND_HALF_EVEN)


def atr_change_fraction(previous: Decimal, current: Decimal) -> Decimal:
    """The relative change of the ATR, |current − previous| / previous, as a fraction (0.10 = 10 %).

    Both ATRs are in price units. Used for the "ATR moves > 10 %" re-evaluation of risk thresholds.
    Raises ``ValueError`` when ``previous`` ≤ 0 (no relative change is defined) or ``current`` < 0.
    """
    previous = _to_decimal(previous, "previous")
    current = _to_decimal(current, "current")
    if previous <= 0:
        raise ValueError(f"previous ATR must be > 0, got {previous}")
    if current < 0:
        raise ValueError(f"current ATR must be >= 0, got {current}")
    with localcontext() as context:
        context.prec = _PRECISION
        return abs(current - previous) / previous


def _to_decimal(value: Number, name: str) -> Decimal:
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation as error:
        raise ValueError(f"{name} is not a number: {value!r}") from error
    if not number.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")
    return number
