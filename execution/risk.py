"""The execution gate (source, page 6, "Execution Service Processing"): pure.

Every order passes here before it reaches the broker, whoever created it (a decision, a guardian
loop, the sweeper handing a queued order out again). ``evaluate_order`` judges one order
against the pool's ``PoolRiskConfig`` limits and the account as of the worker's clock, and
returns every check it ran with what it observed; the worker loads the state, stores the result
whatever it is, and submits only an order that passed.

The gate knows the trading state, as the decision engine's check (a) does, because an order
queued before a halt or a breaker must not reach the broker after it:

- halted pool (an operator's halt): reduce-only, so only a sell covered by the units held
  passes (``pool_halted``);
- pool-wide circuit breaker in force: no entry (buy); exits pass
  (``circuit_breaker_active``);
- entity in its loss cooldown: no entry in that entity (``entity_cooldown_active``).

What is "in force" (triggered, not expired, not cleared, as of ``now``) is the read model's
decision (``portfolio.selectors.breakers_in_force``); this module sees only its answer.

Entries (buys) also face every limit. Exits (sells) only have to be covered by the units held:
an exit reduces risk, so a limit that blocks entries must never trap a commitment. Reasons are
``GateReason`` members, plain strings in the stored evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

ZERO = Decimal("0")


class GateReason(StrEnum):
    """Why the gate stopped an order. The trading-state reasons carry the same values as the
    decision engine's skip reasons (``decisions.vocabulary.SkipReason``)."""

    POOL_HALTED = "pool_halted"
    CIRCUIT_BREAKER_ACTIVE = "circuit_breaker_active"
    ENTITY_COOLDOWN_ACTIVE = "entity_cooldown_active"
    EXIT_EXCEEDS_UNITS_HELD = "exit_exceeds_units_held"
    MAX_OPEN_COMMITMENTS = "max_open_commitments"
    SECTOR_SHARE = "sector_share"
    DAILY_LOSS = "daily_loss"
    NO_EQUITY = "no_equity"
    ORDER_NOTIONAL = "order_notional"
    ORDERS_PER_MINUTE = "orders_per_minute"


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
    """One order and the account state it is judged against (currency, units).

    The trading state has no default, so no caller can forget it: ``halted`` is the pool's
    operator halt, ``breakers_in_force`` the types of the pool-wide breakers in force (empty
    when none) and ``breaker_until`` when the last of them expires, ``entity_cooldown_until``
    the end of this entity's loss cooldown when one is in force, else None.
    """

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
    halted: bool
    breakers_in_force: tuple[str, ...]
    breaker_until: datetime | None
    entity_cooldown_until: datetime | None

    @property
    def notional(self) -> Decimal:
        return self.quantity * self.estimated_value

    @property
    def is_exit(self) -> bool:
        return self.side == "sell"

    @property
    def reduces_commitment(self) -> bool:
        """A sell of units actually held: the only order a halted pool lets through."""
        return self.is_exit and ZERO < self.quantity <= self.held_units


@dataclass(frozen=True)
class RiskEvaluationResult:
    """``passed`` and, per check, what was observed against which limit."""

    passed: bool
    reasons: tuple[GateReason, ...]
    checks: tuple[dict, ...]


def _check(name: str, passed: bool, observed: object, limit: object, reason: GateReason) -> dict:
    return {
        "check": name,
        "passed": passed,
        "observed": str(observed),
        "limit": str(limit),
        "reason": "" if passed else reason,
    }


def check_trading_state(order: OrderRiskInput) -> list[dict]:
    """The halt, the pool-wide breakers and the entity's cooldown, one check each, recorded
    for every order (exits included, passed) so the evaluation shows the state it saw."""
    breakers = ", ".join(order.breakers_in_force) or "none"
    cooling = order.entity_cooldown_until
    return [
        _check(
            "trading_state",
            not order.halted or order.reduces_commitment,
            "halted" if order.halted else "active",
            "reduce_only" if order.halted else "none",
            GateReason.POOL_HALTED,
        ),
        _check(
            "circuit_breaker",
            order.is_exit or not order.breakers_in_force,
            breakers,
            f"no entry until {order.breaker_until}" if order.breakers_in_force else "none",
            GateReason.CIRCUIT_BREAKER_ACTIVE,
        ),
        _check(
            "entity_cooldown",
            order.is_exit or cooling is None,
            order.symbol if cooling is not None else "none",
            f"no entry until {cooling}" if cooling is not None else "none",
            GateReason.ENTITY_COOLDOWN_ACTIVE,
        ),
    ]


def evaluate_order(order: OrderRiskInput, limits: PoolRiskLimits) -> RiskEvaluationResult:
    """Judge one order; every check runs (no short-circuit) so the record shows them all.

    The trading state comes first (see the module docstring), then, for an exit, the units
    held, for an entry, the limits. ``passed`` is True when every check passed; ``reasons``
    are the ``GateReason`` values of the failed ones, in the order they ran.
    """
    checks: list[dict] = check_trading_state(order)
    if order.is_exit:
        checks.append(
            _check(
                "units_held",
                order.quantity <= order.held_units,
                order.quantity,
                order.held_units,
                GateReason.EXIT_EXCEEDS_UNITS_HELD,
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
                GateReason.MAX_OPEN_COMMITMENTS,
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
                    GateReason.SECTOR_SHARE,
                )
            )
            loss = max(-order.daily_gain, ZERO) / order.total_value
            checks.append(
                _check(
                    "daily_loss",
                    loss <= limits.max_daily_loss_pct,
                    loss.quantize(Decimal("0.000001")),
                    limits.max_daily_loss_pct,
                    GateReason.DAILY_LOSS,
                )
            )
        else:
            checks.append(
                _check("total_value", False, order.total_value, "> 0", GateReason.NO_EQUITY)
            )
        checks.append(
            _check(
                "order_notional",
                order.notional <= limits.max_order_notional,
                order.notional.quantize(Decimal("0.01")),
                limits.max_order_notional,
                GateReason.ORDER_NOTIONAL,
            )
        )
        rate = order.orders_last_minute + 1
        checks.append(
            _check(
                "orders_per_minute",
                rate <= limits.max_orders_per_minute,
                rate,
                limits.max_orders_per_minute,
                GateReason.ORDERS_PER_MINUTE,
            )
        )
    reasons = tuple(c["reason"] for c in checks if not c["passed"])
    return RiskEvaluationResult(passed=not reasons, reasons=reasons, checks=tuple(checks))
