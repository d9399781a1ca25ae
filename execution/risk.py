"""The execution service's risk evaluation (source, page 6, "Execution Service Processing").

A second line of defence behind the decision engine: ``evaluate_order`` checks one order
against the pool's ``PoolRiskConfig`` and the account's state. Pure: the worker loads the
state, this module judges it, the worker stores the result whatever it is.

Entries (buys) face every limit. Exits (sells) only have to be covered by the units held:
an exit reduces risk, so a limit that blocks entries must never trap a commitment.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal("0")


@dataclass(frozen=True)
class PoolRiskLimits:
    """Limits of ``pool_risk_configs``; fractions are fractions (0.05 = 5 %)."""

    max_open_commitments: int
    max_sector_pct: Decimal
    max_daily_loss_pct: Decimal
    max_order_notional: Decimal
    max_orders_per_minute: int


@dataclass(frozen=True)
class OrderRiskInput:
    """One order and the account state it is judged against (currency, units)."""

    side: str
    symbol: str
    sector: str
    quantity: Decimal
    estimated_value: Decimal
    opens_new_commitment: bool
    open_commitments: int
    sector_value: Decimal
    total_value: Decimal
    daily_gain: Decimal
    orders_last_minute: int
    held_units: Decimal

    @property
    def notional(self) -> Decimal:
        return self.quantity * self.estimated_value


@dataclass(frozen=True)
class RiskEvaluationResult:
    """``passed`` and, per check, what was observed against which limit."""

    passed: bool
    reasons: tuple[str, ...]
    checks: tuple[dict, ...]


def _check(name: str, passed: bool, observed: object, limit: object, reason: str) -> dict:
    return {
        "check": name,
        "passed": passed,
        "observed": str(observed),
        "limit": str(limit),
        "reason": "" if passed else reason,
    }


def evaluate_order(order: OrderRiskInput, limits: PoolRiskLimits) -> RiskEvaluationResult:
    """Judge one order; every check runs (no short-circuit) so the record shows them all."""
    checks: list[dict] = []
    if order.side == "sell":
        checks.append(
            _check(
                "units_held",
                order.quantity <= order.held_units,
                order.quantity,
                order.held_units,
                "exit_exceeds_units_held",
            )
        )
    else:
        after = order.open_commitments + (1 if order.opens_new_commitment else 0)
        checks.append(
            _check(
                "max_open_commitments",
                after <= limits.max_open_commitments,
                after,
                limits.max_open_commitments,
                "max_open_commitments",
            )
        )
        if order.total_value > 0:
            share = (order.sector_value + order.notional) / order.total_value
            checks.append(
                _check(
                    "sector_share",
                    share <= limits.max_sector_pct,
                    share.quantize(Decimal("0.000001")),
                    limits.max_sector_pct,
                    "sector_share",
                )
            )
            loss = max(-order.daily_gain, ZERO) / order.total_value
            checks.append(
                _check(
                    "daily_loss",
                    loss <= limits.max_daily_loss_pct,
                    loss.quantize(Decimal("0.000001")),
                    limits.max_daily_loss_pct,
                    "daily_loss",
                )
            )
        else:
            checks.append(_check("total_value", False, order.total_value, "> 0", "no_equity"))
        checks.append(
            _check(
                "order_notional",
                order.notional <= limits.max_order_notional,
                order.notional.quantize(Decimal("0.01")),
                limits.max_order_notional,
                "order_notional",
            )
        )
        rate = order.orders_last_minute + 1
        checks.append(
            _check(
                "orders_per_minute",
                rate <= limits.max_orders_per_minute,
                rate,
                limits.max_orders_per_minute,
                "orders_per_minute",
            )
        )
    reasons = tuple(c["reason"] for c in checks if not c["passed"])
    return RiskEvaluationResult(passed=not reasons, reasons=reasons, checks=tuple(checks))
