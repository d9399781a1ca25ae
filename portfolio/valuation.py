"""Valuation of a pool's commitments: pure arithmetic on frozen views (source, page 6).

Values are currency, fractions are fractions. ``current_value`` is the latest data point of the
entity as of the cycle; when there is none the entry value stands in for valuation (and the
commitment is not counted as declining, since nothing says it is).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

ZERO = Decimal("0")


@dataclass(frozen=True)
class PositionView:
    """An open commitment as valuation sees it; its levels (price units) ride along for the
    pages that show them."""

    commitment_id: int
    symbol: str
    sector: str
    units: Decimal
    entry_value: Decimal
    current_value: Decimal | None
    risk_threshold: Decimal | None
    opened_at: datetime | None = None
    gain_target: Decimal | None = None
    trailing_active: bool = False
    atr: Decimal | None = None

    @property
    def mark(self) -> Decimal:
        """Value per unit used for valuation: current value, else the entry value."""
        return self.current_value if self.current_value is not None else self.entry_value

    @property
    def market_value(self) -> Decimal:
        return self.units * self.mark

    @property
    def unrealized_gain(self) -> Decimal:
        return self.units * (self.mark - self.entry_value)

    @property
    def heat(self) -> Decimal:
        """Pool exposure of this commitment: units × (value − risk threshold), never negative."""
        if self.risk_threshold is None:
            return ZERO
        return max(self.units * (self.mark - self.risk_threshold), ZERO)

    def loss_fraction(self) -> Decimal:
        """Unrealized loss as a fraction of the entry value (0.03 = down 3 %); 0 when up."""
        if self.current_value is None or self.entry_value <= 0:
            return ZERO
        return max((self.entry_value - self.current_value) / self.entry_value, ZERO)

    def is_declining(self, loss_pct: Decimal) -> bool:
        """True when the unrealized loss exceeds ``loss_pct`` (a fraction) of the entry value."""
        return self.loss_fraction() > loss_pct


def compute_total_value(cash: Decimal, positions: Iterable[PositionView]) -> Decimal:
    """Total resource pool value: cash (reserve included) + market value of the commitments."""
    return cash + sum((p.market_value for p in positions), ZERO)


def compute_active_pool(total_value: Decimal, reserve_balance: Decimal) -> Decimal:
    """Capital available for execution: total pool value − reserve balance (source)."""
    return total_value - reserve_balance


def compute_pool_exposure(positions: Iterable[PositionView]) -> Decimal:
    """Pool exposure (heat): Σ units × (value − risk threshold) over the commitments."""
    return sum((p.heat for p in positions), ZERO)


def count_declining(positions: Iterable[PositionView], loss_pct: Decimal) -> int:
    """How many commitments are down more than ``loss_pct`` of their entry value."""
    return sum(1 for p in positions if p.is_declining(loss_pct))


def compute_daily_gain(
    positions: Iterable[PositionView],
    previous_closes: dict[str, Decimal],
    session_open: datetime,
    realized_today: Decimal,
) -> Decimal:
    """The pool's gain (negative: loss) since the previous session's close, in currency.

    Each commitment counts from the previous close, or from its entry value when it was opened
    during the current session (or no previous close is known); realized gains of the current
    session are added.
    """
    gain = realized_today
    for p in positions:
        if p.current_value is None:
            continue
        opened_today = p.opened_at is not None and p.opened_at >= session_open
        reference = p.entry_value if opened_today else previous_closes.get(p.symbol, p.entry_value)
        gain += p.units * (p.current_value - reference)
    return gain
