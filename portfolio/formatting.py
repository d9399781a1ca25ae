"""Numbers as the audit trail's readable notes show them (pure)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal


def format_percent(fraction: Decimal) -> str:
    """A fraction as a percent with at most one decimal: 0.1 → "10 %", 0.142857 → "14.3 %"."""
    value = (fraction * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN)
    text = f"{value:f}"
    if text.endswith(".0"):
        text = text[:-2]
    return f"{text} %"
