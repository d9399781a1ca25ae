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
- entity in its loss cooldown: no entry in that entity (``entity_cooldown_active``);
- entity held reduce-only by an open reconciliation event (its units at the broker differ
  from the books, ``execution.reconciliation``): no entry in that entity, exits pass
  (``reconciliation_hold``);
- the broker account (``GET /v2/account``, read just before the claim): not ``ACTIVE``,
  blocked, trading suspended by its owner, or a buy above the buying power left
  (``execution.account_rules.check_account``; its reasons). An account that could not be read
  fails the check (``account_unavailable``); the worker does not even claim then;
- a shadow pool on a live adapter: never sent (``shadow_pool_live_adapter``), whatever the
  side.

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

from execution.account_rules import AccountCheck

ZERO = Decimal("0")


class GateReason(StrEnum):
    """Why the gate stopped an order. The trading-state reasons carry the same values as the
    decision engine's skip reasons (``decisions.vocabulary.SkipReason``)."""

    POOL_HALTED = "pool_halted"
    CIRCUIT_BREAKER_ACTIVE = "circuit_breaker_active"
    ENTITY_COOLDOWN_ACTIVE = "entity_cooldown_active"
    RECONCILIATION_HOLD = "reconciliation_hold"
    EXIT_EXCEEDS_UNITS_HELD = "exit_exceeds_units_held"
    MAX_OPEN_COMMITMENTS = "max_open_commitments"
    SECTOR_SHARE = "sector_share"
    DAILY_LOSS = "daily_loss"
    NO_EQUITY = "no_equity"
    ORDER_NOTIONAL = "order_notional"
    ORDERS_PER_MINUTE = "orders_per_minute"
    # The broker account (the values of ``execution.account_rules.AccountReason``).
    ACCOUNT_NOT_ACTIVE = "account_not_active"
    ACCOUNT_BLOCKED = "account_blocked"
    TRADING_BLOCKED = "trading_blocked"
    TRADE_SUSPENDED_BY_USER = "trade_suspended_by_user"
    INSUFFICIENT_BUYING_POWER = "insufficient_buying_power"
    ACCOUNT_UNAVAILABLE = "account_unavailable"
    SHADOW_POOL_LIVE_ADAPTER = "shadow_pool_live_adapter"


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
    the end of this entity's loss cooldown when one is in force, else None. ``reduce_only``
    is True while the entity is held by an open reconciliation event (the read model's
    ``reduce_only`` set). ``account`` is ``execution.account_rules.check_account``'s answer
    for this order against the broker account (the buying power left after the orders of the
    same claim already passed); ``None``, an account that could not be read, fails the check.
    ``shadow_live_adapter`` is True for an order of a shadow pool whose adapter is not paper.
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
    reduce_only: bool = False
    account: AccountCheck | None = None
    shadow_live_adapter: bool = False

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
    """The halt, the pool-wide breakers, the entity's cooldown and its reconciliation hold,
    one check each, recorded for every order (exits included, passed) so the evaluation shows
    the state it saw."""
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
        _check(
            "reconciliation",
            order.is_exit or not order.reduce_only,
            order.symbol if order.reduce_only else "none",
            "reduce_only" if order.reduce_only else "none",
            GateReason.RECONCILIATION_HOLD,
        ),
    ]


def check_account_and_adapter(order: OrderRiskInput) -> list[dict]:
    """The broker account's check (``account``) and the shadow pool's (``shadow_pool``), for
    every order."""
    account = order.account
    if account is None:
        account_check = _check(
            "account", False, "unavailable", "ACTIVE", GateReason.ACCOUNT_UNAVAILABLE
        )
    else:
        account_check = _check(
            "account",
            account.passed,
            account.reason or "ok",
            "ACTIVE, unblocked, buying power",
            GateReason(account.reason) if account.reason else GateReason.ACCOUNT_UNAVAILABLE,
        )
    return [
        account_check,
        _check(
            "shadow_pool",
            not order.shadow_live_adapter,
            "live adapter" if order.shadow_live_adapter else "none",
            "paper only" if order.shadow_live_adapter else "none",
            GateReason.SHADOW_POOL_LIVE_ADAPTER,
        ),
    ]


def evaluate_order(order: OrderRiskInput, limits: PoolRiskLimits) -> RiskEvaluationResult:
    """Judge one order; every check runs (no short-circuit) so the record shows them all.

    The trading state comes first (see the module docstring), then the broker account and the
    shadow pool's adapter, then, for an exit, the units
    held, for an entry, the limits. ``passed`` is True when every check passed; ``reasons``
    are the ``GateReason`` values of the failed ones, in the order they ran.
    """
    checks: list[dict] = check_trading_state(order) + check_account_and_adapter(order)
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
