"""RiskThresholdManager rules: re-evaluation, trailing and tightening of a commitment's levels.

Implements the RiskThresholdManager of ``_risk_threshold_monitor()`` in "The Decision Execution
Engine Loop" of the source document: it
"re-evaluates [the levels] when volatility shifts materially (ATR change > 10%), activates
trailing thresholds when the value moves more than 50% toward the gain target, and tightens
thresholds proactively when pool exposure exceeds 80% of the maximum", and the monitor acts "when
a value crosses a risk threshold or gain target". The design ("Loops", risk threshold
monitor) gives the formulas and the rule that stops never loosen. The initial levels come from
``portfolio.risk_levels``.

Prices (entry value, current value, levels, ATR) are in price units; fractions are fractions
(0.10 = 10 %). All arithmetic is in ``Decimal``; nothing here reads the clock or the database.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum

from portfolio.formatting import format_percent as _percent
from portfolio.indicators import atr_change_fraction
from portfolio.risk_levels import LEVEL_QUANTUM, compute_initial_levels, never_loosen

__all__ = [
    "CommitmentLevels",
    "Crossing",
    "LevelUpdate",
    "ThresholdConfig",
    "check_crossing",
    "update_levels",
]

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class ThresholdConfig:
    """Thresholds of the RiskThresholdManager, all fractions (0.10 = 10 %).

    ``atr_change_pct``: relative ATR change above which the levels are re-evaluated (source: 10 %).
    ``trailing_activation_pct``: share of the way from entry to gain target above which the stop
    starts trailing (source: 50 %).
    ``heat_tighten_pct``: pool exposure as a share of its maximum above which the stop is tightened
    (source: 80 %).
    ``tighten_factor``: how much of the usual stop distance is kept when tightening: the tightened
    stop sits ATR × multiplier × tighten_factor below the current value. The source only says the
    manager "tightens thresholds proactively"; halving the distance is this system's choice.
    """

    atr_change_pct: Decimal = Decimal("0.10")
    trailing_activation_pct: Decimal = Decimal("0.50")
    heat_tighten_pct: Decimal = Decimal("0.80")
    tighten_factor: Decimal = Decimal("0.5")


@dataclass(frozen=True, slots=True)
class CommitmentLevels:
    """The monitored state of one commitment, in price units.

    ``atr`` is the ATR the levels were last computed with (the reference for the next "ATR moved
    > 10 %" test); ``highest_value`` is the highest value seen since entry; ``trailing_active``
    stays True once the stop has started trailing.
    """

    symbol: str
    entry_value: Decimal
    risk_threshold: Decimal
    gain_target: Decimal
    atr: Decimal
    highest_value: Decimal
    trailing_active: bool


@dataclass(frozen=True, slots=True)
class LevelUpdate:
    """The outcome of one ``update_levels`` call: the new state, whether it differs, and why."""

    levels: CommitmentLevels
    changed: bool
    notes: tuple[str, ...]


class Crossing(StrEnum):
    """Which level the current value has crossed; the monitor exits the commitment on either."""

    RISK_THRESHOLD = "risk_threshold"
    GAIN_TARGET = "gain_target"


def update_levels(
    levels: CommitmentLevels,
    current_value: Decimal,
    atr: Decimal | None,
    stop_loss_atr_multiplier: Decimal,
    reward_risk_ratio: Decimal,
    heat_ratio: Decimal,
    config: ThresholdConfig | None = None,
) -> LevelUpdate:
    """Apply the RiskThresholdManager rules to ``levels`` for one observation of the commitment.

    ``current_value`` and ``atr`` are in price units (``atr`` None: no fresh ATR, the stored one is
    used); ``stop_loss_atr_multiplier`` and ``reward_risk_ratio`` are the active tier's multipliers;
    ``heat_ratio`` is the pool exposure divided by its maximum (max_portfolio_heat × active pool), a
    fraction (0.85 = 85 % of the maximum). ``config`` defaults to ``ThresholdConfig()``.

    The rules, in order:

    a. ``highest_value`` = max(highest_value, current_value).
    b. Re-evaluation: when ``atr`` is given and |atr − stored ATR| / stored ATR is strictly above
       ``atr_change_pct``, the levels are recomputed from the entry value with the new ATR
       (``compute_initial_levels``) and the new ATR is stored. The target follows in either
       direction; the stop only ever rises (stop = max(old stop, new stop)). A stored ATR of 0 has
       no relative change; any positive new ATR then counts as material.
    c. Trailing: once (highest − entry) / (target − entry) is strictly above
       ``trailing_activation_pct`` the stop trails (``trailing_active`` stays True from then on):
       stop = max(stop, highest − ATR × multiplier), with the current ATR.
    d. Tightening: when ``heat_ratio`` is strictly above ``heat_tighten_pct``,
       stop = max(stop, current − ATR × multiplier × tighten_factor), a candidate never above the
       current value.

    The stop never decreases, is never negative and is quantized to 4 decimal places (candidates
    rounded down, so rounding never lifts a stop onto the value it trails). Returns a
    ``LevelUpdate`` with readable notes for each rule that moved something.

    Raises ``ValueError`` when current value < 0, ATR < 0, multiplier ≤ 0, ratio ≤ 0 or
    heat ratio < 0.
    """
    config = config if config is not None else ThresholdConfig()
    if current_value < 0:
        raise ValueError(f"current_value must be >= 0, got {current_value}")
    if atr is not None and atr < 0:
        raise ValueError(f"atr must be >= 0, got {atr}")
    if stop_loss_atr_multiplier <= 0:
        raise ValueError(f"stop_loss_atr_multiplier must be > 0, got {stop_loss_atr_multiplier}")
    if reward_risk_ratio <= 0:
        raise ValueError(f"reward_risk_ratio must be > 0, got {reward_risk_ratio}")
    if heat_ratio < 0:
        raise ValueError(f"heat_ratio must be >= 0, got {heat_ratio}")

    notes: list[str] = []
    entry = levels.entry_value
    stop = levels.risk_threshold
    target = levels.gain_target
    stored_atr = levels.atr
    current_atr = atr if atr is not None else levels.atr

    # (a) High-water mark since entry.
    highest = max(levels.highest_value, current_value)

    # (b) Re-evaluation on a material ATR move.
    if atr is not None and _is_material_change(levels.atr, atr, config.atr_change_pct):
        fresh = compute_initial_levels(entry, atr, stop_loss_atr_multiplier, reward_risk_ratio)
        change = _format_change(levels.atr, atr)
        notes.append(f"ATR {_price(levels.atr)} → {_price(atr)}{change}: levels re-evaluated")
        if fresh.risk_threshold < stop:
            notes.append(
                f"stop kept at {_price(stop)}: the re-evaluated {_price(fresh.risk_threshold)} "
                "would loosen it"
            )
        elif fresh.risk_threshold > stop:
            notes.append(f"stop raised {_price(stop)} → {_price(fresh.risk_threshold)}")
        stop = never_loosen(stop, fresh.risk_threshold)
        if fresh.gain_target != target:
            notes.append(f"gain target {_price(target)} → {_price(fresh.gain_target)}")
            target = fresh.gain_target
        stored_atr = atr

    # (c) Trailing once the value has gone more than halfway (by default) to the target.
    trailing = levels.trailing_active
    if not trailing and target > entry:
        progress = (highest - entry) / (target - entry)
        if progress > config.trailing_activation_pct:
            trailing = True
            notes.append(f"trailing activated at {_percent(progress)} of the way to the target")
    if trailing:
        candidate = _stop_candidate(highest - current_atr * stop_loss_atr_multiplier)
        if candidate > stop:
            notes.append(f"trailing stop raised {_price(stop)} → {_price(candidate)}")
        stop = never_loosen(stop, candidate)

    # (d) Proactive tightening while the pool runs hot.
    if heat_ratio > config.heat_tighten_pct:
        distance = current_atr * stop_loss_atr_multiplier * config.tighten_factor
        candidate = _stop_candidate(min(current_value - distance, current_value))
        if candidate > stop:
            notes.append(
                f"stop tightened: pool exposure {_percent(heat_ratio)} of its maximum "
                f"({_price(stop)} → {_price(candidate)})"
            )
        stop = never_loosen(stop, candidate)

    new_levels = replace(
        levels,
        risk_threshold=stop,
        gain_target=target,
        atr=stored_atr,
        highest_value=highest,
        trailing_active=trailing,
    )
    return LevelUpdate(levels=new_levels, changed=new_levels != levels, notes=tuple(notes))


def check_crossing(levels: CommitmentLevels, current_value: Decimal) -> Crossing | None:
    """Which level ``current_value`` (price units) has crossed, or None while it is between them.

    At or below the risk threshold → ``RISK_THRESHOLD`` (the stop itself counts as hit); at or above
    the gain target → ``GAIN_TARGET``, trailing or not: reaching the target exits, the conservative
    reading of the source's "crosses a ... gain target". Should both hold (a stop raised to or above
    the target), the risk threshold wins.
    """
    if current_value <= levels.risk_threshold:
        return Crossing.RISK_THRESHOLD
    if current_value >= levels.gain_target:
        return Crossing.GAIN_TARGET
    return None


def _is_material_change(previous: Decimal, current: Decimal, threshold: Decimal) -> bool:
    if previous <= 0:
        return current > 0
    return atr_change_fraction(previous, current) > threshold


def _stop_candidate(value: Decimal) -> Decimal:
    return max(value, ZERO).quantize(LEVEL_QUANTUM, rounding=ROUND_FLOOR)


def _format_change(previous: Decimal, current: Decimal) -> str:
    if previous <= 0:
        return ""
    signed = (current - previous) / previous
    sign = "+" if signed >= 0 else "−"
    return f" ({sign}{_percent(abs(signed))})"


def _price(value: Decimal) -> str:
    """A price with at least two decimals and no trailing zeros beyond them: 2.1 → "2.10"."""
    if value == value.quantize(Decimal("0.01")):
        return f"{value.quantize(Decimal('0.01')):f}"
    return f"{value.normalize():f}"
