"""Reserve pool arithmetic: pure rules, no Django, no clock.

Implements "Reserve Pool" of the source document:
profit siphoning, the high-water mark and emergency liquidation. The active pool itself
(total − reserve) is ``portfolio.valuation.compute_active_pool``. The caller persists every
movement as a ``reserve_pool_ledger`` row; these functions only compute it.

Balances and gains are currency (``Decimal``), fractions are fractions (0.20 = 20 %).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

__all__ = [
    "RESERVE_QUANTUM",
    "ReserveConfig",
    "SiphonResult",
    "emergency_liquidate",
    "is_high_water",
    "reserve_fraction",
    "should_emergency_liquidate",
    "siphon_profit",
]

ZERO = Decimal("0")
#: Currency precision of a siphon transfer (the ledger's 4 decimal places).
RESERVE_QUANTUM = Decimal("0.0001")


@dataclass(frozen=True)
class ReserveConfig:
    """The reserve's numbers, with the source's defaults; all fractions (0.20 = 20 %).

    ``siphon_pct``: share of a realized gain moved into the reserve. ``high_water_pct``: reserve
    share of the total pool value above which the reserve is at its high-water mark.
    ``emergency_drawdown_pct``: peak-to-trough decline above which the reserve is released.
    """

    siphon_pct: Decimal = Decimal("0.20")
    high_water_pct: Decimal = Decimal("0.30")
    emergency_drawdown_pct: Decimal = Decimal("0.25")


@dataclass(frozen=True)
class SiphonResult:
    """A transfer into the reserve: ``amount`` and ``balance_after`` in currency, ``note`` for
    the ledger row."""

    amount: Decimal
    balance_after: Decimal
    note: str


def siphon_profit(
    realized_gain: Decimal, reserve_balance: Decimal, config: ReserveConfig
) -> SiphonResult | None:
    """The transfer into the reserve for a closed commitment's ``realized_gain`` (currency).

    Only a positive gain siphons: ``amount = realized_gain × siphon_pct``, quantized to 0.0001
    rounding down, so the reserve never takes more than its fraction. A loss or a zero gain
    returns ``None``: losses never reduce the reserve. A gain so small that the amount rounds to
    0 also returns ``None``, since there is nothing to record.
    ``balance_after = reserve_balance + amount``.
    """
    if realized_gain <= 0:
        return None
    amount = (realized_gain * config.siphon_pct).quantize(RESERVE_QUANTUM, rounding=ROUND_DOWN)
    if amount <= 0:
        return None
    balance_after = reserve_balance + amount
    return SiphonResult(
        amount=amount,
        balance_after=balance_after,
        note=(
            f"profit siphon: {config.siphon_pct} of realized gain {realized_gain} = {amount}; "
            f"reserve {reserve_balance} → {balance_after}"
        ),
    )


def reserve_fraction(reserve_balance: Decimal, total_value: Decimal) -> Decimal:
    """The reserve as a fraction of the total resource pool value (0.25 = 25 %).

    0 when the total value is ≤ 0 (no meaningful share).
    """
    if total_value <= 0:
        return ZERO
    return reserve_balance / total_value


def is_high_water(reserve_balance: Decimal, total_value: Decimal, config: ReserveConfig) -> bool:
    """True when the reserve exceeds ``high_water_pct`` of the total pool value.

    Strict: a reserve of exactly 30 % is not at the high-water mark. A total value ≤ 0 → False.
    """
    if total_value <= 0:
        return False
    return reserve_fraction(reserve_balance, total_value) > config.high_water_pct


def should_emergency_liquidate(
    peak_to_trough: Decimal, reserve_balance: Decimal, config: ReserveConfig
) -> bool:
    """True when the reserve must be released back into the active pool.

    ``peak_to_trough`` is the current decline from the peak as a fraction (0.25 = 25 %). Trips when
    it is strictly greater than ``emergency_drawdown_pct`` and there is a reserve (> 0) to release.
    """
    return peak_to_trough > config.emergency_drawdown_pct and reserve_balance > 0


def emergency_liquidate(reserve_balance: Decimal) -> Decimal:
    """The amount released by an emergency liquidation: the whole reserve balance (currency).

    Never negative: a balance ≤ 0 releases 0. The caller zeroes the persisted balance and records
    the ledger entry (amount = −released, balance_after = 0).
    """
    return max(reserve_balance, ZERO)
