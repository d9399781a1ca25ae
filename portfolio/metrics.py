"""Pool performance metrics: pure functions, no Django, no clock.

Implements the metric computations of ``_performance_loop()`` in "The Decision Execution Engine
Loop" of the source document: success rate,
risk-adjusted return ratio (Sharpe) and peak-to-trough decline. The caller loads the closed
commitments and the daily pool values (one per session, oldest first) and passes them in.

Money and fractions are ``Decimal`` (0.12 = 12 %); returns and the Sharpe ratio are floats, the
one place floats are used (CONVENTIONS.md, "floats only inside metrics").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal

import numpy as np

__all__ = [
    "current_drawdown",
    "daily_returns",
    "peak_to_trough",
    "sharpe_ratio",
    "success_rate",
]

ZERO = Decimal("0")


def success_rate(realized_gains: Sequence[Decimal]) -> Decimal | None:
    """Closed commitments with a gain (> 0) / closed commitments, a fraction (0.55 = 55 %).

    ``realized_gains`` holds one realized gain (currency, negative: a loss) per closed commitment
    in the window; a gain of exactly 0 is not a success. ``None`` when nothing closed: no rate
    rather than a rate of 0, so the tier controller can tell "no evidence" from "all lost".
    """
    if not realized_gains:
        return None
    wins = sum(1 for gain in realized_gains if gain > 0)
    return Decimal(wins) / Decimal(len(realized_gains))


def daily_returns(values: Sequence[Decimal | float]) -> np.ndarray:
    """Simple returns of consecutive daily pool values: ``v[i] / v[i−1] − 1`` (0.01 = +1 %).

    ``values`` are total pool values in currency, one per session, oldest first. The result has
    ``len(values) − 1`` floats (empty for fewer than two values). Raises ``ValueError`` on a
    value ≤ 0 or not finite, which no pool value can be and which would make a return undefined.
    """
    array = np.asarray([float(v) for v in values], dtype=float)
    if array.size and (not np.all(np.isfinite(array)) or np.any(array <= 0)):
        raise ValueError("daily pool values must be finite and > 0")
    if array.size < 2:
        return np.empty(0, dtype=float)
    return array[1:] / array[:-1] - 1.0


def sharpe_ratio(
    returns: np.ndarray, risk_free_daily: float = 0.0, periods_per_year: int = 252
) -> float | None:
    """Annualized Sharpe ratio of daily returns: ``mean(excess) / std(excess) × √periods``.

    ``returns`` are daily simple returns (fractions), ``risk_free_daily`` the risk-free return per
    period (a fraction), ``excess = returns − risk_free_daily`` and ``std`` the sample standard
    deviation (ddof = 1). ``None`` with fewer than 2 returns, or when the excess returns do not
    vary (a zero standard deviation gives no ratio, not an infinite one).
    """
    excess = np.asarray(returns, dtype=float) - risk_free_daily
    if excess.size < 2:
        return None
    # Identical values are tested exactly: their computed std may be a rounding residue ≠ 0.
    if np.ptp(excess) == 0:
        return None
    deviation = float(np.std(excess, ddof=1))
    if deviation == 0 or not math.isfinite(deviation):
        return None
    return float(np.mean(excess)) / deviation * math.sqrt(periods_per_year)


def _check_positive(values: Sequence[Decimal]) -> None:
    if any(v <= 0 for v in values):
        raise ValueError("pool values must be > 0")


def peak_to_trough(values: Sequence[Decimal]) -> Decimal:
    """Maximum drawdown: the largest decline from a running peak, as a fraction of that peak.

    ``values`` are pool values in currency, oldest first; 0.12 means a 12 % decline. 0 for a
    rising or empty series. With values > 0 the result lies in [0, 1). Raises ``ValueError`` on a
    value ≤ 0.
    """
    _check_positive(values)
    worst = ZERO
    peak: Decimal | None = None
    for value in values:
        if peak is None or value > peak:
            peak = value
            continue
        worst = max(worst, (peak - value) / peak)
    return worst


def current_drawdown(values: Sequence[Decimal]) -> Decimal:
    """The current peak-to-trough decline: the last value's decline from the running peak.

    A fraction (0.2 = 20 % below the highest value so far), 0 at a new peak or for an empty
    series. This is the "current peak-to-trough decline" the tier controller and the emergency
    liquidation use. Raises ``ValueError`` on a value ≤ 0.
    """
    _check_positive(values)
    if not values:
        return ZERO
    peak = max(values)
    return (peak - values[-1]) / peak
