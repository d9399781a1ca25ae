"""The pool's books: fills move commitments and cash, and commitments carry their levels.

``book_fill`` (one fill) and ``book_fills`` (a batch, in a fixed number of queries, with the
same outcome as ``book_fill`` once per fill) are the only code that opens, adds to, reduces or
closes a commitment and moves the pool's cash for a fill; the execution worker calls them
inside the transaction that stores the broker's answers, so the orders, the fills, the
commitments and the cash commit together.
``refresh_levels`` is the risk threshold monitor's half: the same initial levels and the same
"a stop never loosens" (``portfolio.risk_levels``) for a commitment seen again.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db import models, transaction
from django.utils import timezone

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


@dataclass(frozen=True)
class BuyLevelsInputs:
    """What a buy's levels are computed from: the pool's tier and, per entity, its ATR as of
    the booking's ``now`` (None with too few bars)."""

    tier: TierParams
    atrs: Mapping[str, Decimal | None]


def buy_levels_inputs(pool: Pool, entity_ids: Iterable[str], now: datetime) -> BuyLevelsInputs:
    """The tier and the ATRs of ``entity_ids`` that buys booked at ``now`` take their levels
    from, read once for all of them. Two queries (the tier, the bars), and the engine
    configuration unless ``pool`` was read with ``select_related("engine_config")``."""
    config = get_engine_config(pool)
    symbols = set(entity_ids)
    market = load_market_data(symbols, now, config.atr_period + 1)
    return BuyLevelsInputs(
        tier=tier_params(pool.risk_tier),
        atrs={symbol: market.atr(symbol, config.atr_period) for symbol in symbols},
    )


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
    levels_inputs: BuyLevelsInputs | None = None,
) -> BookedFill:
    """Book ``units`` bought or sold at ``value`` (per unit) into the pool's books.

    ``pool`` must be locked by the caller (``select_for_update``) inside its transaction. A buy
    takes the cash and opens the entity's commitment, or adds to it at the averaged entry value,
    with levels from the ATR of the tier in force (a stop never loosens on an add). A sell
    returns the cash, realizes ``(value − entry) × units`` and closes the commitment when no
    unit is left. A sell without an open commitment means the books and the broker disagree:
    the cash is booked, the fill recorded without a commitment, and an error logged for
    reconciliation. ``order_filled_quantity`` (the order's cumulative filled quantity after
    this fill) makes each fill increment of an order bookable once: booking it again breaks
    the fills' unique constraint (``IntegrityError``), and the caller's transaction, which
    stored nothing else, rolls back. The commitment's amounts are kept as their columns hold
    them (``_as_stored``), so what the next fill reads back is what this one computed.

    Queries: the commitment (locked), the cash, the fill, and the commitment's write; a buy
    also reads the tier and one bounded query of bars for the ATR, and the engine
    configuration unless ``pool`` was read with ``select_related("engine_config")``; not the
    tier nor the bars when ``levels_inputs`` (``buy_levels_inputs``, read once for several
    fills of one transaction) carries the entity. ``book_fills`` books several fills with a
    fixed number of queries.
    """
    fill = FillToBook(
        entity_id=entity_id,
        side=side,
        units=units,
        value=value,
        filled_at=filled_at,
        reason=reason,
        order_id=order_id,
        order_filled_quantity=order_filled_quantity,
    )
    commitment = (
        Commitment.objects.select_for_update()
        .filter(pool=pool, entity_id=entity_id, status=CommitmentStatus.OPEN)
        .first()
    )
    if side == FillSide.BUY and (levels_inputs is None or entity_id not in levels_inputs.atrs):
        levels_inputs = buy_levels_inputs(pool, [entity_id], now)
    commitment, realized = _move_books(pool, commitment, fill, levels_inputs)
    if commitment is not None:
        commitment.save()
    pool.save(update_fields=["cash", "updated_at"])
    row = _fill_row(pool, fill, commitment, realized)
    row.save(force_insert=True)
    return BookedFill(row, commitment, realized)


@dataclass(frozen=True)
class FillToBook:
    """One fill for ``book_fills``: ``book_fill``'s arguments but the pool and the clock."""

    entity_id: str
    side: str
    units: Decimal
    value: Decimal
    filled_at: datetime
    reason: str = ""
    order_id: int | None = None
    order_filled_quantity: Decimal | None = None


#: What booking a fill can change on a commitment it already holds.
_MOVED_FIELDS = (
    "units",
    "entry_value",
    "entry_cost",
    "atr",
    "highest_value",
    "risk_threshold",
    "gain_target",
    "realized_gain",
    "status",
    "closed_at",
    "exit_value",
    "close_reason",
    "updated_at",
)


def book_fills(
    pool: Pool,
    fills: Sequence[FillToBook],
    *,
    now: datetime,
    levels_inputs: BuyLevelsInputs | None = None,
) -> list[BookedFill]:
    """Book ``fills`` in the order given, exactly as ``book_fill`` once per fill would: the
    same commitments opened, added to, reduced and closed, the same cash, the same fills rows
    (with the same realized gains) and the same levels, with a fixed number of queries
    whatever the number of fills.

    ``pool`` must be locked by the caller (``select_for_update``) inside its transaction. The
    fills move the books in memory one after the other (the rules ``book_fill`` applies), then
    everything is written at once inside a savepoint: a fill increment already booked (or
    twice in ``fills``) breaks the fills' unique constraint as with ``book_fill``, the
    ``IntegrityError`` is raised and nothing of the batch is written (the pool's cash in
    memory is restored). Each result's commitment is a snapshot of that commitment right
    after its fill, as ``book_fill`` returns it.

    Queries: the open commitments of the fills' entities (locked), the tier and the bars for
    the buys' entities ``levels_inputs`` does not carry (``buy_levels_inputs``, once), then
    the changed commitments' update, the new commitments' insert, the cash and the fills'
    insert (one each, none for nothing to write), inside one savepoint.
    """
    if not fills:
        return []
    entity_ids = {fill.entity_id for fill in fills}
    current: dict[str, Commitment | None] = {
        commitment.entity_id: commitment
        for commitment in Commitment.objects.select_for_update().filter(
            pool=pool, entity_id__in=entity_ids, status=CommitmentStatus.OPEN
        )
    }
    known = levels_inputs.atrs if levels_inputs is not None else {}
    missing = {f.entity_id for f in fills if f.side == FillSide.BUY and f.entity_id not in known}
    read = buy_levels_inputs(pool, missing, now) if missing else None
    cash_before = pool.cash
    changed: dict[int, Commitment] = {}
    opened: dict[int, Commitment] = {}
    snapshots: list[tuple[Commitment, Commitment]] = []
    rows: list[Fill] = []
    booked: list[BookedFill] = []
    for fill in fills:
        inputs = read if fill.entity_id in missing else levels_inputs
        commitment, realized = _move_books(pool, current.get(fill.entity_id), fill, inputs)
        snapshot = None
        if commitment is not None:
            if commitment.pk is None:
                opened[id(commitment)] = commitment
            else:
                changed[commitment.pk] = commitment
            current[fill.entity_id] = (
                commitment if commitment.status == CommitmentStatus.OPEN else None
            )
            snapshot = copy.copy(commitment)
            snapshots.append((snapshot, commitment))
        rows.append(_fill_row(pool, fill, commitment, realized))
        booked.append(BookedFill(rows[-1], snapshot, realized))
    stamp = timezone.now()
    for commitment in changed.values():
        commitment.updated_at = stamp
    try:
        with transaction.atomic():
            # Closing comes first: a commitment opened again for the same entity must not
            # meet the one it follows still open (one open commitment per entity).
            if changed:
                Commitment.objects.bulk_update(list(changed.values()), _MOVED_FIELDS)
            if opened:
                Commitment.objects.bulk_create(list(opened.values()))
            pool.save(update_fields=["cash", "updated_at"])
            Fill.objects.bulk_create(rows)
    except Exception:
        pool.cash = cash_before
        raise
    for snapshot, commitment in snapshots:
        snapshot.pk = commitment.pk
        snapshot._state.adding = False
    return booked


def _fill_row(
    pool: Pool, fill: FillToBook, commitment: Commitment | None, realized: Decimal | None
) -> Fill:
    return Fill(
        pool=pool,
        entity_id=fill.entity_id,
        commitment=commitment,
        order_id=fill.order_id,
        side=fill.side,
        units=fill.units,
        value=fill.value,
        order_filled_quantity=fill.order_filled_quantity or fill.units,
        realized_gain=realized,
        reason=fill.reason,
        booked_at=fill.filled_at,
    )


def _move_books(
    pool: Pool,
    commitment: Commitment | None,
    fill: FillToBook,
    levels_inputs: BuyLevelsInputs | None,
) -> tuple[Commitment | None, Decimal | None]:
    """One fill's move of the pool's cash and of ``commitment`` (the entity's open one, or
    None), in memory: the commitment it leaves (new for a buy without one; None for a sell
    without one) and the gain it realized. ``levels_inputs`` carries a buy's entity."""
    units, value = fill.units, fill.value
    if fill.side == FillSide.BUY:
        pool.cash -= units * value
        assert levels_inputs is not None
        return _add_units(pool, commitment, fill, levels_inputs), None
    if commitment is None:
        logger.error(
            "pool %s: sell of %s %s without an open commitment", pool, units, fill.entity_id
        )
        pool.cash += units * value
        return None, None
    realized = (value - commitment.entry_value) * units
    pool.cash += units * value
    commitment.units -= units
    commitment.entry_cost -= commitment.entry_value * units
    commitment.realized_gain += realized
    if commitment.units <= 0:
        commitment.units = Decimal("0")
        commitment.status = CommitmentStatus.CLOSED
        commitment.closed_at = fill.filled_at
        commitment.exit_value = value
        commitment.close_reason = fill.reason
    _as_stored(commitment)
    return commitment, realized


def _add_units(
    pool: Pool,
    commitment: Commitment | None,
    fill: FillToBook,
    levels_inputs: BuyLevelsInputs,
) -> Commitment:
    entity_id, units, value = fill.entity_id, fill.units, fill.value
    tier = levels_inputs.tier
    atr = levels_inputs.atrs[entity_id]
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
            opened_at=fill.filled_at,
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
    _as_stored(commitment)
    return commitment


def _as_stored(commitment: Commitment) -> None:
    """Round the commitment's amounts as their columns store them (PostgreSQL's ``numeric``
    rounds half away from zero), so the commitment in memory is the one read back."""
    for field in _DECIMAL_FIELDS:
        amount = getattr(commitment, field.attname)
        if amount is not None:
            setattr(
                commitment,
                field.attname,
                Decimal(amount).quantize(
                    Decimal(1).scaleb(-field.decimal_places), rounding=ROUND_HALF_UP
                ),
            )


_DECIMAL_FIELDS = tuple(
    field for field in Commitment._meta.concrete_fields if isinstance(field, models.DecimalField)
)


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
