"""The commitment sizer (source, page 6, "Commitment Sizing"): pure, no Django, no clock.

The sizer turns a recommendation's confidence into a dollar amount and a whole number of units,
step by step, in the source's order:

1. base: ``max_position_pct × 0.5 × confidence / min_confidence``
2. clamp to ``max_position_pct``; dollars against the active pool (total − reserve); an add to
   an existing commitment is limited to the room left under ``max_position_pct``
3. absolute commitment cap
4. correlation: value-weighted average correlation with the open commitments; above the reject
   threshold (0.8) reject, from the reduce threshold (0.5) scale by ``1 − (c − 0.5)/(0.8 − 0.5)``
5. sector: at the tier's ``max_sector_pct`` reject, else cut to the remaining room
6. diversification bonus ×1.2 when fewer than 3 sectors are held and the sector is new,
   re-clamped to ``max_position_pct`` and the cap (the cap is a hard ceiling)
7. performance report proximity: within 1 session reject, within 3 sessions halve
8. pool exposure: ``new heat = units × ATR × stop_loss_atr_multiplier``; above
   ``max_portfolio_heat × active pool`` reject
9. ``floor(dollars / value)`` units, 0 rejects; dollars recomputed from the units; never more
   than the spendable cash

Every number is ``Decimal``: dollars in currency units, fractions as fractions (0.05 = 5 %).
A rejection is data (``rejected=True`` and a ``reason``, a ``decisions.vocabulary.SkipReason``
member), never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal

from decisions.vocabulary import SkipReason
from portfolio.tiers import TierParams

ZERO = Decimal("0")
ONE = Decimal("1")
HALF = Decimal("0.5")
CENT = Decimal("0.0001")


@dataclass(frozen=True)
class SizingConfig:
    """The engine configuration numbers the sizer uses."""

    absolute_commitment_cap: Decimal = Decimal("50")
    correlation_reduce_threshold: Decimal = Decimal("0.5")
    correlation_reject_threshold: Decimal = Decimal("0.8")
    diversification_bonus: Decimal = Decimal("1.2")
    diversification_min_sectors: int = 3
    report_reject_sessions: int = 1
    report_reduce_sessions: int = 3
    report_reduce_factor: Decimal = Decimal("0.5")


@dataclass(frozen=True)
class SizingInput:
    """Everything the sizer needs to know about one candidate and the pool, as of the cycle.

    ``correlation`` is the value-weighted average correlation of the candidate's daily returns
    with the open commitments (None when no holding has a usable correlation).
    ``report_sessions_away`` counts sessions on the exchange calendar (0 = the current session),
    None when no report is scheduled ahead. ``available_cash`` is the cash that new commitments
    may spend (cash − reserve − pending entry costs).
    """

    confidence: Decimal
    current_value: Decimal
    atr: Decimal | None
    correlation: float | None
    sector: str
    sector_value: Decimal
    held_sectors: frozenset[str]
    report_sessions_away: int | None
    active_pool: Decimal
    available_cash: Decimal
    pool_exposure: Decimal
    existing_value: Decimal = ZERO


@dataclass(frozen=True)
class SizingStep:
    """One line of the sizing waterfall: the dollar amount before and after a step."""

    step: str
    before: Decimal
    after: Decimal
    note: str
    data: dict = field(default_factory=dict)

    def as_trace(self) -> dict:
        return {
            "step": self.step,
            "before": _money(self.before),
            "after": _money(self.after),
            "note": self.note,
            **self.data,
        }


@dataclass(frozen=True)
class CommitmentSizeResult:
    """The sizer's answer: the final amount, or a rejection with its reason (a ``SkipReason``;
    ``""`` when not rejected).

    ``dollar_amount`` is units × current value (currency), ``allocation_pct`` the fraction of
    the active pool it represents, ``steps`` the waterfall and ``notes`` its readable lines.
    """

    rejected: bool
    reason: SkipReason | str
    dollar_amount: Decimal
    units: Decimal
    allocation_pct: Decimal
    steps: tuple[SizingStep, ...]
    correlation: float | None
    correlation_check: str
    sector_exposure_after: Decimal | None
    sector_check: str
    report_proximity: str
    new_heat: Decimal | None

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(step.note for step in self.steps)

    def as_trace(self) -> dict:
        return {
            "rejected": self.rejected,
            "reason": self.reason,
            "dollar_amount": _money(self.dollar_amount),
            "units": str(self.units),
            "allocation_pct": str(self.allocation_pct),
            "waterfall": [step.as_trace() for step in self.steps],
        }


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT))


def _pct(value: Decimal) -> str:
    return f"{(value * 100).quantize(Decimal('0.01'))} %"


class _Waterfall:
    """Accumulates the steps; the sizer's local bookkeeping, not part of the API."""

    def __init__(self) -> None:
        self.steps: list[SizingStep] = []
        self.correlation_check = "not_reached"
        self.sector_check = "not_reached"
        self.sector_after: Decimal | None = None
        self.report_proximity = "not_reached"
        self.new_heat: Decimal | None = None

    def add(self, step: str, before: Decimal, after: Decimal, note: str, **data) -> Decimal:
        self.steps.append(SizingStep(step, before, after, note, data))
        return after

    def result(
        self,
        *,
        rejected: bool,
        reason: SkipReason | str = "",
        dollars: Decimal = ZERO,
        units: Decimal = ZERO,
        active_pool: Decimal = ZERO,
        correlation: float | None = None,
    ) -> CommitmentSizeResult:
        allocation = (dollars / active_pool) if active_pool > 0 and not rejected else ZERO
        return CommitmentSizeResult(
            rejected=rejected,
            reason=reason,
            dollar_amount=dollars if not rejected else ZERO,
            units=units if not rejected else ZERO,
            allocation_pct=allocation.quantize(Decimal("0.000001")),
            steps=tuple(self.steps),
            correlation=correlation,
            correlation_check=self.correlation_check,
            sector_exposure_after=self.sector_after,
            sector_check=self.sector_check,
            report_proximity=self.report_proximity,
            new_heat=self.new_heat,
        )


def size_commitment(
    candidate: SizingInput, tier: TierParams, config: SizingConfig
) -> CommitmentSizeResult:
    """Size one commitment; see the module docstring for the steps and their order."""
    w = _Waterfall()
    active_pool = candidate.active_pool
    corr = candidate.correlation
    if active_pool <= 0:
        w.add("active_pool", ZERO, ZERO, f"Active pool is {_money(active_pool)}: nothing to size")
        return w.result(rejected=True, reason=SkipReason.INSUFFICIENT_ACTIVE_POOL, correlation=corr)

    # 1. Base allocation from the tier and the confidence.
    base_pct = tier.max_position_pct * HALF
    raw_pct = base_pct * candidate.confidence / tier.min_confidence
    w.add(
        "base",
        ZERO,
        raw_pct * active_pool,
        f"Base {_pct(base_pct)} × confidence {candidate.confidence} / minimum "
        f"{tier.min_confidence} = {_pct(raw_pct)} of the active pool",
        base_pct=str(base_pct),
        raw_pct=str(raw_pct.quantize(Decimal("0.000001"))),
    )

    # 2. Clamp to the tier's maximum commitment, in dollars against the active pool.
    pct = min(raw_pct, tier.max_position_pct)
    max_position_dollars = tier.max_position_pct * active_pool
    dollars = w.add(
        "clamp",
        raw_pct * active_pool,
        pct * active_pool,
        (
            f"Clamped to the tier maximum {_pct(tier.max_position_pct)}"
            if raw_pct > tier.max_position_pct
            else f"Within the tier maximum {_pct(tier.max_position_pct)}"
        )
        + f" of active pool {_money(active_pool)}",
        pct=str(pct.quantize(Decimal("0.000001"))),
        active_pool=_money(active_pool),
    )
    position_room = max_position_dollars - candidate.existing_value
    if candidate.existing_value > 0:
        if position_room <= 0:
            w.add(
                "position_room",
                dollars,
                ZERO,
                f"Existing commitment {_money(candidate.existing_value)} already at the tier "
                f"maximum {_money(max_position_dollars)}",
            )
            return w.result(
                rejected=True, reason=SkipReason.POSITION_LIMIT_REACHED, correlation=corr
            )
        if dollars > position_room:
            dollars = w.add(
                "position_room",
                dollars,
                position_room,
                f"Add limited to the room left beside the existing commitment "
                f"{_money(candidate.existing_value)}",
            )

    # 3. Absolute cap: a hard ceiling whatever the pool size.
    cap = config.absolute_commitment_cap
    dollars = w.add(
        "absolute_cap",
        dollars,
        min(dollars, cap),
        f"Capped at the absolute commitment cap {_money(cap)}"
        if dollars > cap
        else f"Within the absolute commitment cap {_money(cap)}",
    )

    # 4. Correlation-aware diversification.
    reduce_at = config.correlation_reduce_threshold
    reject_at = config.correlation_reject_threshold
    if corr is None:
        w.correlation_check = "no_data"
        w.add("correlation", dollars, dollars, "No correlation with the holdings: no reduction")
    else:
        c = Decimal(str(round(corr, 6)))
        if c > reject_at:
            w.correlation_check = "rejected"
            w.add(
                "correlation",
                dollars,
                ZERO,
                f"Weighted correlation {c} above {reject_at}: rejected",
                correlation=str(c),
            )
            return w.result(rejected=True, reason=SkipReason.CORRELATION_TOO_HIGH, correlation=corr)
        if c >= reduce_at:
            factor = ONE - (c - reduce_at) / (reject_at - reduce_at)
            scaled = dollars * factor
            w.correlation_check = "scaled" if factor < 1 else "passed"
            dollars = w.add(
                "correlation",
                dollars,
                scaled,
                f"Weighted correlation {c} between {reduce_at} and {reject_at}: "
                f"× {factor.quantize(Decimal('0.0001'))}",
                correlation=str(c),
                factor=str(factor),
            )
            if dollars <= 0:
                w.correlation_check = "rejected"
                return w.result(
                    rejected=True, reason=SkipReason.CORRELATION_TOO_HIGH, correlation=corr
                )
        else:
            w.correlation_check = "passed"
            w.add(
                "correlation",
                dollars,
                dollars,
                f"Weighted correlation {c} below {reduce_at}: no reduction",
                correlation=str(c),
            )

    # 5. Sector exposure.
    sector_limit = tier.max_sector_pct * active_pool
    sector_value = candidate.sector_value
    if sector_value >= sector_limit:
        w.sector_check = "rejected"
        w.sector_after = sector_value
        w.add(
            "sector",
            dollars,
            ZERO,
            f"Sector {candidate.sector} at {_money(sector_value)}, limit "
            f"{_pct(tier.max_sector_pct)} = {_money(sector_limit)}: rejected",
            sector_value=_money(sector_value),
            sector_limit=_money(sector_limit),
        )
        return w.result(rejected=True, reason=SkipReason.SECTOR_LIMIT_REACHED, correlation=corr)
    room = sector_limit - sector_value
    if dollars > room:
        w.sector_check = "reduced"
        dollars = w.add(
            "sector",
            dollars,
            room,
            f"Sector {candidate.sector} reduced to fill the remaining room {_money(room)} "
            f"under {_money(sector_limit)}",
            sector_value=_money(sector_value),
            sector_limit=_money(sector_limit),
        )
    else:
        w.sector_check = "passed"
        w.add(
            "sector",
            dollars,
            dollars,
            f"Sector {candidate.sector} at {_money(sector_value)} of {_money(sector_limit)}: "
            "room enough",
            sector_value=_money(sector_value),
            sector_limit=_money(sector_limit),
        )

    # 6. Diversification bonus for a new sector while few sectors are held.
    held = len(candidate.held_sectors)
    if held < config.diversification_min_sectors and candidate.sector not in candidate.held_sectors:
        boosted = dollars * config.diversification_bonus
        ceiling = min(max_position_dollars, cap)
        if candidate.existing_value > 0:
            ceiling = min(ceiling, position_room)
        # The bonus never cuts: a ceiling below the amount (an add) leaves it as it was.
        after = max(dollars, min(boosted, ceiling))
        dollars = w.add(
            "diversification_bonus",
            dollars,
            after,
            f"New sector {candidate.sector} with {held} sector(s) held: × "
            f"{config.diversification_bonus}, re-clamped to {_money(ceiling)}",
        )
    else:
        w.add(
            "diversification_bonus",
            dollars,
            dollars,
            f"No diversification bonus ({held} sector(s) held, sector "
            f"{'already held' if candidate.sector in candidate.held_sectors else 'new'})",
        )
    w.sector_after = sector_value + dollars

    # 7. Performance report proximity.
    away = candidate.report_sessions_away
    if away is None:
        w.report_proximity = "none"
        w.add("report_proximity", dollars, dollars, "No performance report ahead")
    elif away <= config.report_reject_sessions:
        w.report_proximity = "rejected"
        w.add(
            "report_proximity",
            dollars,
            ZERO,
            f"Performance report {away} session(s) away (within "
            f"{config.report_reject_sessions}): rejected",
            sessions_away=away,
        )
        return w.result(rejected=True, reason=SkipReason.REPORT_TOO_CLOSE, correlation=corr)
    elif away <= config.report_reduce_sessions:
        w.report_proximity = "reduced"
        dollars = w.add(
            "report_proximity",
            dollars,
            dollars * config.report_reduce_factor,
            f"Performance report {away} sessions away (within "
            f"{config.report_reduce_sessions}): × {config.report_reduce_factor}",
            sessions_away=away,
        )
    else:
        w.report_proximity = "clear"
        w.add(
            "report_proximity",
            dollars,
            dollars,
            f"Performance report {away} sessions away: no adjustment",
            sessions_away=away,
        )

    # 8. Pool exposure (heat) of the new commitment.
    value = candidate.current_value
    if candidate.atr is None:
        w.add("pool_exposure", dollars, ZERO, "Not enough bars to compute the ATR: rejected")
        return w.result(rejected=True, reason=SkipReason.INSUFFICIENT_HISTORY, correlation=corr)
    # The units this amount buys, within the spendable cash: the heat is that of what would
    # actually be bought.
    spendable = max(candidate.available_cash, ZERO)
    cash_limited = dollars > spendable
    units = (min(dollars, spendable) / value).to_integral_value(rounding=ROUND_FLOOR)
    new_heat = units * candidate.atr * tier.stop_loss_atr_multiplier
    heat_cap = tier.max_portfolio_heat * active_pool
    w.new_heat = new_heat
    heat_after = candidate.pool_exposure + new_heat
    heat_data = {
        "pool_exposure": _money(candidate.pool_exposure),
        "new_heat": _money(new_heat),
        "heat_cap": _money(heat_cap),
        "atr": str(candidate.atr),
    }
    if heat_after > heat_cap:
        w.add(
            "pool_exposure",
            dollars,
            ZERO,
            f"Pool exposure {_money(candidate.pool_exposure)} + {_money(new_heat)} = "
            f"{_money(heat_after)} above {_pct(tier.max_portfolio_heat)} of the active pool "
            f"({_money(heat_cap)}): rejected",
            **heat_data,
        )
        return w.result(rejected=True, reason=SkipReason.POOL_EXPOSURE_LIMIT, correlation=corr)
    w.add(
        "pool_exposure",
        dollars,
        dollars,
        f"Pool exposure {_money(heat_after)} within {_money(heat_cap)}",
        **heat_data,
    )

    # 9. Whole units (already bounded by the spendable cash above).
    cash_note = f"; limited by spendable cash {_money(spendable)}" if cash_limited else ""
    final = units * value
    if units <= 0:
        reason = SkipReason.INSUFFICIENT_CASH if cash_note else SkipReason.ZERO_UNITS
        w.add(
            "units",
            dollars,
            ZERO,
            f"{_money(dollars)} buys no whole unit at {value}{cash_note}: rejected",
        )
        return w.result(rejected=True, reason=reason, correlation=corr)
    w.add(
        "units",
        dollars,
        final,
        f"floor({_money(dollars)} / {value}) = {units} units → {_money(final)}{cash_note}",
        units=str(units),
        value=str(value),
    )
    return w.result(
        rejected=False, dollars=final, units=units, active_pool=active_pool, correlation=corr
    )
