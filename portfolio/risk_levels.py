"""Initial risk threshold (stop) and gain target (take profit) of a commitment, from its ATR.

Implements "computes initial levels from ATR and risk tier parameters" of the RiskThresholdManager
in "The Decision Execution Engine Loop" of the source document, with the tier parameters of "Risk
Tier Auto-Adjustment" (stop_loss_atr_multiplier 1.5 / 2.0 / 2.5, reward_risk_ratio 2.0 / 1.5 /
1.2). The design ("Loops", risk threshold monitor) gives the formulas:
stop = entry − ATR × multiplier, target = entry + (entry − stop) × reward_risk_ratio. Trailing and
tightening of the levels are separate rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

__all__ = [
    "LEVEL_QUANTUM",
    "RiskLevels",
    "compute_initial_levels",
    "levels_at_entry",
    "never_loosen",
]

LEVEL_QUANTUM = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class RiskLevels:
    """Price levels of a commitment, in price units (same as the entry value), 4 decimal places.

    ``risk_threshold`` is the stop: an exit when the value falls to or below it. ``gain_target`` is
    the take profit: an exit when the value rises to or above it.
    """

    risk_threshold: Decimal
    gain_target: Decimal


def compute_initial_levels(
    entry_value: Decimal,
    atr: Decimal,
    stop_loss_atr_multiplier: Decimal,
    reward_risk_ratio: Decimal,
) -> RiskLevels:
    """The initial risk threshold and gain target of a commitment entered at ``entry_value``.

    ``entry_value`` and ``atr`` are in price units; ``stop_loss_atr_multiplier`` (e.g. 2.0) and
    ``reward_risk_ratio`` (e.g. 1.5) are plain multipliers.

    risk_threshold = entry − ATR × multiplier, floored at 0 because a price never goes negative;
    gain_target = entry + (entry − risk_threshold) × reward_risk_ratio, using the floored and
    quantized threshold, so the target reflects the risk actually taken. Both are quantized to 4
    decimal places away from the entry (the threshold rounded down, the target rounded up): the
    rounding never pulls a level onto the entry, so threshold < entry < target holds whenever
    ATR > 0. An ATR of 0 leaves no distance: both levels sit at the entry (rounded outward).

    Raises ``ValueError`` when entry ≤ 0, ATR < 0, multiplier ≤ 0 or ratio ≤ 0.
    """
    if entry_value <= 0:
        raise ValueError(f"entry_value must be > 0, got {entry_value}")
    if atr < 0:
        raise ValueError(f"atr must be >= 0, got {atr}")
    if stop_loss_atr_multiplier <= 0:
        raise ValueError(f"stop_loss_atr_multiplier must be > 0, got {stop_loss_atr_multiplier}")
    if reward_risk_ratio <= 0:
        raise ValueError(f"reward_risk_ratio must be > 0, got {reward_risk_ratio}")

    risk_threshold = max(entry_value - atr * stop_loss_atr_multiplier, Decimal(0))
    risk_threshold = risk_threshold.quantize(LEVEL_QUANTUM, rounding=ROUND_FLOOR)
    gain_target = entry_value + (entry_value - risk_threshold) * reward_risk_ratio
    gain_target = gain_target.quantize(LEVEL_QUANTUM, rounding=ROUND_CEILING)
    return RiskLevels(risk_threshold=risk_threshold, gain_target=gain_target)


def never_loosen(previous_stop: Decimal | None, proposed_stop: Decimal) -> Decimal:
    """The stop to keep: the proposed one, but never below the stop already in force.

    The one place the rule "a stop never loosens" is written: a fill that adds to a commitment,
    a re-evaluation on a new ATR, trailing and tightening all pass their candidate through it.
    """
    if previous_stop is None:
        return proposed_stop
    return max(previous_stop, proposed_stop)


def levels_at_entry(
    entry_value: Decimal,
    atr: Decimal,
    stop_loss_atr_multiplier: Decimal,
    reward_risk_ratio: Decimal,
    *,
    previous_stop: Decimal | None = None,
) -> RiskLevels:
    """The levels of a commitment at its (average) entry value: ``compute_initial_levels``,
    with the stop kept at ``previous_stop`` when that is higher (an add never loosens it).

    Used by the books when a fill opens or adds to a commitment and by the risk threshold
    monitor when a commitment has no levels yet.
    """
    levels = compute_initial_levels(entry_value, atr, stop_loss_atr_multiplier, reward_risk_ratio)
    return RiskLevels(never_loosen(previous_stop, levels.risk_threshold), levels.gain_target)
