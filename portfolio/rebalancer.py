"""PoolRebalancer rules: trims that bring commitments back within the active risk tier's limits.

Implements the PoolRebalancer of ``_rebalance_scheduler()`` in "The Decision Execution Engine Loop"
of the source document: it "evaluates [current
commitments] against the active risk tier's constraints" (max_position_pct, max_sector_pct,
max_portfolio_heat of "Risk Tier Auto-Adjustment", applied to the active pool as in "Commitment
Sizing"). The design ("Loops", rebalancer) settles the form of the outcome: partial
exits of whole units that trim each commitment back to the limit. Skipping the cycle while a breaker
is active is the caller's business.

Values are currency (units × value per unit); limits are fractions of the active pool (0.10 = 10 %).
All arithmetic is in ``Decimal``; nothing here reads the clock or the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

from portfolio.formatting import format_percent as _percent

__all__ = [
    "REASON_POOL_EXPOSURE_LIMIT",
    "REASON_POSITION_LIMIT",
    "REASON_SECTOR_LIMIT",
    "RebalanceHolding",
    "RebalanceLimits",
    "RebalancePlan",
    "Trim",
    "plan_rebalance",
]

REASON_POSITION_LIMIT = "position_limit"
REASON_SECTOR_LIMIT = "sector_limit"
REASON_POOL_EXPOSURE_LIMIT = "pool_exposure_limit"
REASON_SEPARATOR = ","

ZERO = Decimal(0)
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class RebalanceHolding:
    """An open commitment as the rebalancer sees it.

    ``units`` is a whole number ≥ 0; ``current_value`` and ``risk_threshold`` are per unit, in price
    units. A commitment without a risk threshold carries no pool exposure (as in
    ``portfolio.valuation.PositionView.heat``).
    """

    commitment_id: int
    symbol: str
    sector: str
    units: Decimal
    current_value: Decimal
    risk_threshold: Decimal | None


@dataclass(frozen=True, slots=True)
class RebalanceLimits:
    """The active risk tier's limits and the active pool they apply to.

    ``max_position_pct``, ``max_sector_pct`` and ``max_portfolio_heat`` are fractions of the active
    pool (0.10 = 10 %); ``active_pool`` is currency (total pool value − reserve balance).
    """

    max_position_pct: Decimal
    max_sector_pct: Decimal
    max_portfolio_heat: Decimal
    active_pool: Decimal


@dataclass(frozen=True, slots=True)
class Trim:
    """A partial (or full) exit of one commitment: sell ``units`` whole units, 0 < units ≤ held.

    ``reason`` is one of ``position_limit``, ``sector_limit``, ``pool_exposure_limit``, or several
    of them joined by "," (in rule order) when more than one rule trimmed the commitment; ``note``
    states the figures before and after and the limit, one sentence per rule joined by "; ".
    """

    commitment_id: int
    symbol: str
    units: Decimal
    reason: str
    note: str


@dataclass(frozen=True, slots=True)
class RebalancePlan:
    """The trims to execute (ordered by symbol, then commitment id) and pool-level notes."""

    trims: tuple[Trim, ...]
    notes: tuple[str, ...]


def plan_rebalance(holdings: Sequence[RebalanceHolding], limits: RebalanceLimits) -> RebalancePlan:
    """The trims that bring ``holdings`` back within ``limits``; an empty plan when nothing breaks.

    The rules run in order, each on the units the earlier rules left:

    1. Position limit: a commitment whose value (units × current value) is strictly above
       max_position_pct × active pool sells ceil((value − limit) / current value) units.
    2. Sector limit: a sector whose total value is strictly above max_sector_pct × active pool sells
       from its largest commitment by value first (ties by symbol, then commitment id), then the
       next, each time the whole units that cover the remaining excess, rounded up.
    3. Pool exposure limit: when Σ units × max(current value − risk threshold, 0) is strictly above
       max_portfolio_heat × active pool, the commitments with the largest exposure per unit sell
       first (ties by symbol, then commitment id) until the exposure is at or under the cap.

    Rounding up means a trimmed figure ends at or under its limit, never above. A later rule never
    undoes an earlier one since it only sells more. Trims of one commitment by several rules merge
    into a single ``Trim``; no trim exceeds the units held. With an active pool ≤ 0 no limit can be
    computed: the plan is empty and says so in its notes.

    Raises ``ValueError`` on a negative limit fraction, a negative or fractional unit count, a
    negative current value or a repeated commitment id.
    """
    _validate(holdings, limits)
    pool = limits.active_pool
    if pool <= 0:
        return RebalancePlan(
            trims=(),
            notes=(f"active pool {_money(pool)} ≤ 0: no limits to rebalance against",),
        )

    ordered = sorted(holdings, key=lambda h: (h.symbol, h.commitment_id))
    remaining = {h.commitment_id: h.units for h in ordered}
    sold: dict[int, Decimal] = {}
    reasons: dict[int, list[str]] = {}
    trim_notes: dict[int, list[str]] = {}
    notes: list[str] = []

    def sell(holding: RebalanceHolding, units: Decimal, reason: str, note: str) -> None:
        remaining[holding.commitment_id] -= units
        sold[holding.commitment_id] = sold.get(holding.commitment_id, ZERO) + units
        if reason not in reasons.setdefault(holding.commitment_id, []):
            reasons[holding.commitment_id].append(reason)
        trim_notes.setdefault(holding.commitment_id, []).append(note)

    # 1. Position limit.
    position_limit = limits.max_position_pct * pool
    for holding in ordered:
        held = remaining[holding.commitment_id]
        value = held * holding.current_value
        if value <= position_limit:
            continue
        units = min(_units_to_cover(value - position_limit, holding.current_value), held)
        after = (held - units) * holding.current_value
        note = (
            f"{holding.symbol}: value {_money(value)} → {_money(after)} ({held} → {held - units} "
            f"units), position limit {_money(position_limit)} "
            f"({_percent(limits.max_position_pct)} of the active pool)"
        )
        sell(holding, units, REASON_POSITION_LIMIT, note)

    # 2. Sector limit.
    sector_limit = limits.max_sector_pct * pool
    for sector in sorted({h.sector for h in ordered}):
        members = [h for h in ordered if h.sector == sector]
        total = sum((remaining[h.commitment_id] * h.current_value for h in members), ZERO)
        if total <= sector_limit:
            continue
        excess = total - sector_limit
        by_size = sorted(
            members,
            key=lambda h: (
                -remaining[h.commitment_id] * h.current_value,
                h.symbol,
                h.commitment_id,
            ),
        )
        for holding in by_size:
            if excess <= 0:
                break
            held = remaining[holding.commitment_id]
            if held <= 0 or holding.current_value <= 0:
                continue
            units = min(_units_to_cover(excess, holding.current_value), held)
            excess -= units * holding.current_value
            note = (
                f"{holding.symbol}: {held} → {held - units} units for sector {sector}, "
                f"sector limit {_money(sector_limit)} "
                f"({_percent(limits.max_sector_pct)} of the active pool)"
            )
            sell(holding, units, REASON_SECTOR_LIMIT, note)
        after = sector_limit + excess
        notes.append(
            f"sector {sector}: value {_money(total)} → {_money(after)}, "
            f"limit {_money(sector_limit)} ({_percent(limits.max_sector_pct)} of the active pool)"
        )

    # 3. Pool exposure limit.
    heat_cap = limits.max_portfolio_heat * pool
    heat = sum((remaining[h.commitment_id] * _heat_per_unit(h) for h in ordered), ZERO)
    if heat > heat_cap:
        excess = heat - heat_cap
        by_heat = sorted(ordered, key=lambda h: (-_heat_per_unit(h), h.symbol, h.commitment_id))
        for holding in by_heat:
            if excess <= 0:
                break
            per_unit = _heat_per_unit(holding)
            held = remaining[holding.commitment_id]
            if held <= 0 or per_unit <= 0:
                continue
            units = min(_units_to_cover(excess, per_unit), held)
            excess -= units * per_unit
            note = (
                f"{holding.symbol}: {held} → {held - units} units, exposure "
                f"{_money(held * per_unit)} → {_money((held - units) * per_unit)}, pool exposure "
                f"cap {_money(heat_cap)} ({_percent(limits.max_portfolio_heat)} of the active pool)"
            )
            sell(holding, units, REASON_POOL_EXPOSURE_LIMIT, note)
        notes.append(
            f"pool exposure {_money(heat)} → {_money(heat_cap + excess)}, "
            f"cap {_money(heat_cap)} ({_percent(limits.max_portfolio_heat)} of the active pool)"
        )

    trims = tuple(
        Trim(
            commitment_id=h.commitment_id,
            symbol=h.symbol,
            units=sold[h.commitment_id],
            reason=REASON_SEPARATOR.join(reasons[h.commitment_id]),
            note="; ".join(trim_notes[h.commitment_id]),
        )
        for h in ordered
        if sold.get(h.commitment_id, ZERO) > 0
    )
    if not trims:
        notes.append(
            "nothing to rebalance: every commitment, sector and the pool exposure is within"
        )
    return RebalancePlan(trims=trims, notes=tuple(notes))


def _validate(holdings: Sequence[RebalanceHolding], limits: RebalanceLimits) -> None:
    for name in ("max_position_pct", "max_sector_pct", "max_portfolio_heat"):
        if getattr(limits, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(limits, name)}")
    seen: set[int] = set()
    for holding in holdings:
        if holding.commitment_id in seen:
            raise ValueError(f"commitment {holding.commitment_id} appears more than once")
        seen.add(holding.commitment_id)
        if holding.units < 0 or holding.units != holding.units.to_integral_value():
            raise ValueError(
                f"{holding.symbol}: units must be a whole number >= 0, got {holding.units}"
            )
        if holding.current_value < 0:
            raise ValueError(
                f"{holding.symbol}: current_value must be >= 0, got {holding.current_value}"
            )


def _heat_per_unit(holding: RebalanceHolding) -> Decimal:
    """Pool exposure of one unit: current value − risk threshold, never negative; 0 without one."""
    if holding.risk_threshold is None:
        return ZERO
    return max(holding.current_value - holding.risk_threshold, ZERO)


def _units_to_cover(amount: Decimal, per_unit: Decimal) -> Decimal:
    """The fewest whole units whose ``per_unit`` value is at least ``amount`` (both > 0)."""
    units = (amount / per_unit).to_integral_value(rounding=ROUND_CEILING)
    # The division is rounded to the context precision; the product check is exact.
    while units * per_unit < amount:
        units += 1
    return units


def _money(value: Decimal) -> str:
    return f"{value.quantize(_CENT, rounding=ROUND_HALF_EVEN):f}"
