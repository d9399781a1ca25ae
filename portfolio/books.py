"""The pool's books: fills move commitments and cash, and commitments carry their levels.

``book_fill`` is the only code that opens, adds to, reduces or closes a commitment and moves
the pool's cash for a fill; the execution worker calls it inside the transaction that stores
the broker's answer, so the order, the fill, the commitment and the cash commit together.
``refresh_levels`` is the risk threshold monitor's half: the same initial levels and the same
"a stop never loosens" (``portfolio.risk_levels``) for a commitment seen again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from portfolio.models import Commitment, CommitmentStatus, Fill, FillSide, Pool
from portfolio.risk_levels import levels_at_entry
from portfolio.risk_thresholds import CommitmentLevels, ThresholdConfig, update_levels
from portfolio.selectors import get_engine_config, load_market_data, tier_params
from portfolio.tiers import TierParams

logger = logging.getLogger(__name__)

AVERAGE_QUANTUM = Decimal("0.0001")


@dataclass(frozen=True)
class BookedFill:
    """What one fill did to the books: the commitment it moved (None when the books had no
    commitment to sell from) and the gain it realized (sells only)."""

    fill: Fill
    commitment: Commitment | None
    realized_gain: Decimal | None


def book_fill(
    pool: Pool,
    *,
    entity_id: str,
    side: str,
    units: Decimal,
    value: Decimal,
    filled_at: datetime,
    now: datetime,
    reason: str = "",
    order_id: int | None = None,
    order_filled_quantity: Decimal | None = None,
) -> BookedFill:
    """Book ``units`` bought or sold at ``value`` (per unit) into the pool's books.

    ``pool`` must be locked by the caller (``select_for_update``) inside its transaction. A buy
    takes the cash and opens the entity's commitment, or adds to it at the averaged entry value,
    with levels from the ATR of the tier in force (a stop never loosens on an add). A sell
    returns the cash, realizes ``(value − entry) × units`` and closes the commitment when no
    unit is left. A sell without an open commitment means the books and the broker disagree:
    the cash is booked, the fill recorded without a commitment, and an error logged for
    reconciliation. ``order_filled_quantity`` (the order's cumulative filled quantity after
    this fill) makes each fill increment of an order bookable once (a unique constraint).

    Queries: the commitment (locked), the cash, the fill, and the commitment's write; a buy
    also reads the tier and one bounded query of bars for the ATR, and the engine
    configuration unless ``pool`` was read with ``select_related("engine_config")``.
    """
    commitment = (
        Commitment.objects.select_for_update()
        .filter(pool=pool, entity_id=entity_id, status=CommitmentStatus.OPEN)
        .first()
    )
    realized: Decimal | None = None
    if side == FillSide.BUY:
        pool.cash -= units * value
        commitment = _add_units(pool, commitment, entity_id, units, value, filled_at, now)
    elif commitment is None:
        logger.error("pool %s: sell of %s %s without an open commitment", pool, units, entity_id)
        pool.cash += units * value
    else:
        realized = (value - commitment.entry_value) * units
        pool.cash += units * value
        commitment.units -= units
        commitment.entry_cost -= commitment.entry_value * units
        commitment.realized_gain += realized
        if commitment.units <= 0:
            commitment.units = Decimal("0")
            commitment.status = CommitmentStatus.CLOSED
            commitment.closed_at = filled_at
            commitment.exit_value = value
            commitment.close_reason = reason
        commitment.save()
    pool.save(update_fields=["cash", "updated_at"])
    fill = Fill.objects.create(
        pool=pool,
        entity_id=entity_id,
        commitment=commitment,
        order_id=order_id,
        side=side,
        units=units,
        value=value,
        order_filled_quantity=order_filled_quantity if order_filled_quantity else units,
        realized_gain=realized,
        reason=reason,
        booked_at=filled_at,
    )
    return BookedFill(fill, commitment, realized)


def _add_units(
    pool: Pool,
    commitment: Commitment | None,
    entity_id: str,
    units: Decimal,
    value: Decimal,
    filled_at: datetime,
    now: datetime,
) -> Commitment:
    config = get_engine_config(pool)
    tier = tier_params(pool.risk_tier)
    atr = load_market_data({entity_id}, now, config.atr_period + 1).atr(
        entity_id, config.atr_period
    )
    if commitment is None:
        commitment = Commitment(
            pool=pool,
            entity_id=entity_id,
            units=units,
            entry_value=value,
            entry_cost=units * value,
            risk_tier=tier.name,
            atr_at_entry=atr,
            atr=atr,
            highest_value=value,
            opened_at=filled_at,
        )
    else:
        total = commitment.units + units
        commitment.entry_value = (
            (commitment.units * commitment.entry_value + units * value) / total
        ).quantize(AVERAGE_QUANTUM)
        commitment.entry_cost += units * value
        commitment.units = total
        commitment.highest_value = max(commitment.highest_value or value, value)
        commitment.atr = atr or commitment.atr
    if commitment.atr:
        levels = levels_at_entry(
            commitment.entry_value,
            commitment.atr,
            tier.stop_loss_atr_multiplier,
            tier.reward_risk_ratio,
            previous_stop=commitment.risk_threshold,
        )
        commitment.risk_threshold, commitment.gain_target = (
            levels.risk_threshold,
            levels.gain_target,
        )
    else:
        logger.warning("pool %s: no ATR for %s; the commitment has no levels", pool, entity_id)
    commitment.save()
    return commitment


def levels_of(commitment: Commitment) -> CommitmentLevels:
    """The monitored levels of a commitment that has them, as the pure rules take them."""
    return CommitmentLevels(
        symbol=commitment.entity_id,
        entry_value=commitment.entry_value,
        risk_threshold=commitment.risk_threshold,
        gain_target=commitment.gain_target,
        atr=commitment.atr or Decimal("0"),
        highest_value=commitment.highest_value or commitment.entry_value,
        trailing_active=commitment.trailing_active,
    )


def refresh_levels(
    commitment: Commitment,
    value: Decimal,
    atr: Decimal | None,
    tier: TierParams,
    heat_ratio: Decimal,
    thresholds: ThresholdConfig,
) -> bool:
    """Apply the RiskThresholdManager to one commitment for one observation, in memory.

    A commitment without levels gets its initial levels (``levels_at_entry``); one with levels
    is re-evaluated, trailed and tightened (``update_levels``). True when anything changed; the
    caller saves.
    """
    if commitment.risk_threshold is None:
        if atr is None:
            return False
        levels = levels_at_entry(
            commitment.entry_value, atr, tier.stop_loss_atr_multiplier, tier.reward_risk_ratio
        )
        commitment.risk_threshold, commitment.gain_target = (
            levels.risk_threshold,
            levels.gain_target,
        )
        commitment.atr = atr
        commitment.highest_value = max(commitment.highest_value or value, value)
        return True
    update = update_levels(
        levels_of(commitment),
        value,
        atr,
        tier.stop_loss_atr_multiplier,
        tier.reward_risk_ratio,
        heat_ratio,
        thresholds,
    )
    if not update.changed:
        return False
    new = update.levels
    commitment.risk_threshold = new.risk_threshold
    commitment.gain_target = new.gain_target
    commitment.atr = new.atr
    commitment.highest_value = new.highest_value
    commitment.trailing_active = new.trailing_active
    return True
