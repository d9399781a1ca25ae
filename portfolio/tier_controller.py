"""Risk tier auto-adjustment: a pure rule, no Django, no clock.

Implements "Risk Tier Auto-Adjustment" of the source document, the
``RiskTierController.evaluate()`` the risk tier scheduler calls at the session close:

- downgrade one step (any one triggers): trailing success rate < 40 % or current
  peak-to-trough decline > 15 %;
- otherwise upgrade one step (all must hold): success rate > 55 %, reserve > 20 % of the total
  pool value, current peak-to-trough decline < 5 %.

The success rate counts as evidence only when the window holds at least
``min_closed_for_success_rate`` closed commitments (5 by default, this system's choice): one
losing close on the first day is not a 0 % success rate to act on. The drawdown rule needs no
such sample.

All comparisons are strict, fractions are fractions (0.40 = 40 %). The caller persists a changed
decision to ``risk_tier_history`` with ``metrics`` and the ``reasons``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

__all__ = ["TIER_LADDER", "TierDecision", "TierMetrics", "TierRules", "evaluate_tier"]

#: The tiers from the most cautious to the most aggressive; a step is one place on this ladder.
TIER_LADDER = ("conservative", "moderate", "aggressive")

_SHOWN = Decimal("0.0001")


@dataclass(frozen=True)
class TierRules:
    """The thresholds of the source, all fractions (0.40 = 40 %)."""

    downgrade_success_rate: Decimal = Decimal("0.40")
    downgrade_drawdown: Decimal = Decimal("0.15")
    upgrade_success_rate: Decimal = Decimal("0.55")
    upgrade_reserve_pct: Decimal = Decimal("0.20")
    upgrade_max_drawdown: Decimal = Decimal("0.05")
    min_closed_for_success_rate: int = 5


@dataclass(frozen=True)
class TierMetrics:
    """The pool's performance as of the evaluation; fractions are fractions.

    ``success_rate``: closed commitments with a gain / closed commitments over the trailing
    window (30 days in the source); ``None`` when none closed. ``peak_to_trough``: the CURRENT
    decline from the running peak (``portfolio.metrics.current_drawdown``). ``reserve_pct``:
    reserve / total pool value. ``risk_adjusted_return``: the annualized Sharpe ratio, recorded
    with the decision but not used by it (the source lists it only among the recorded metrics).
    ``closed_in_window``: how many commitments closed in the window (the success rate's sample);
    None when the caller does not know, and then the rate is taken as it is.
    """

    success_rate: Decimal | None
    peak_to_trough: Decimal
    reserve_pct: Decimal
    risk_adjusted_return: float | None = None
    closed_in_window: int | None = None


@dataclass(frozen=True)
class TierDecision:
    """The controller's answer: ``new`` equals ``current`` unless ``changed``.

    ``direction`` is ``"downgrade"``, ``"upgrade"`` or ``"hold"``; ``reasons`` are readable lines
    such as ``"success rate 0.3800 < 0.40"``; ``metrics`` is JSON-safe (Decimals as strings).
    """

    current: str
    new: str
    changed: bool
    direction: str
    reasons: tuple[str, ...]
    metrics: dict = field(default_factory=dict)


def _shown(value: Decimal) -> str:
    return str(value.quantize(_SHOWN))


def _limit(value: Decimal) -> str:
    """A limit with its stored zeros trimmed, at least two decimals: 0.400000 → 0.40."""
    normalized = value.normalize()
    if -normalized.as_tuple().exponent < 2:
        normalized = normalized.quantize(Decimal("0.01"))
    return format(normalized, "f")


def _metrics_json(metrics: TierMetrics) -> dict:
    ratio = metrics.risk_adjusted_return
    return {
        "success_rate": None if metrics.success_rate is None else str(metrics.success_rate),
        "peak_to_trough": str(metrics.peak_to_trough),
        "reserve_pct": str(metrics.reserve_pct),
        "closed_in_window": metrics.closed_in_window,
        # NaN and infinities are not JSON; they carry no evidence either.
        "risk_adjusted_return": ratio if ratio is not None and math.isfinite(ratio) else None,
    }


def evaluate_tier(current: str, metrics: TierMetrics, rules: TierRules) -> TierDecision:
    """Whether the active risk tier ``current`` should step down, up, or hold.

    Downgrade one step when ``success_rate < downgrade_success_rate`` (0.40) or
    ``peak_to_trough > downgrade_drawdown`` (0.15); exactly 40 % and exactly 15 % do not
    downgrade. Downgrade checks win over upgrade checks. At ``conservative`` there is no lower
    step: the decision holds and says the tier is already at the bottom.

    Otherwise upgrade one step only when ``success_rate > upgrade_success_rate`` (0.55) and
    ``reserve_pct > upgrade_reserve_pct`` (0.20) and ``peak_to_trough < upgrade_max_drawdown``
    (0.05); exactly 55 %, 20 % or 5 % do not upgrade. At ``aggressive`` there is no higher step.

    ``success_rate`` ``None`` (no closed commitments in the window), or a rate measured on fewer
    than ``min_closed_for_success_rate`` closed commitments, is no evidence either way: no
    success-based downgrade and no upgrade, while a drawdown downgrade still applies.

    Raises ``ValueError`` when ``current`` is not on :data:`TIER_LADDER`.
    """
    if current not in TIER_LADDER:
        raise ValueError(f"unknown risk tier {current!r}; expected one of {TIER_LADDER}")
    index = TIER_LADDER.index(current)
    success = metrics.success_rate
    thin = (
        success is not None
        and metrics.closed_in_window is not None
        and metrics.closed_in_window < rules.min_closed_for_success_rate
    )
    if thin:
        success = None
    decline = metrics.peak_to_trough
    reserve = metrics.reserve_pct
    as_json = _metrics_json(metrics)

    downgrade: list[str] = []
    if success is not None and success < rules.downgrade_success_rate:
        downgrade.append(f"success rate {_shown(success)} < {_limit(rules.downgrade_success_rate)}")
    if decline > rules.downgrade_drawdown:
        downgrade.append(
            f"peak-to-trough decline {_shown(decline)} > {_limit(rules.downgrade_drawdown)}"
        )
    if downgrade:
        if index == 0:
            reasons = (*downgrade, f"already at {current}, the bottom of the ladder")
            return TierDecision(current, current, False, "hold", reasons, as_json)
        new = TIER_LADDER[index - 1]
        return TierDecision(current, new, True, "downgrade", tuple(downgrade), as_json)

    upgrade: list[str] = []
    missing: list[str] = []
    if thin:
        missing.append(
            f"{metrics.closed_in_window} closed commitment(s) in the window, fewer than "
            f"{rules.min_closed_for_success_rate}: no success rate evidence"
        )
    elif success is None:
        missing.append("no closed commitments in the window: no success rate evidence")
    elif success > rules.upgrade_success_rate:
        upgrade.append(f"success rate {_shown(success)} > {_limit(rules.upgrade_success_rate)}")
    else:
        missing.append(f"success rate {_shown(success)} ≤ {_limit(rules.upgrade_success_rate)}")
    if reserve > rules.upgrade_reserve_pct:
        upgrade.append(f"reserve {_shown(reserve)} > {_limit(rules.upgrade_reserve_pct)}")
    else:
        missing.append(f"reserve {_shown(reserve)} ≤ {_limit(rules.upgrade_reserve_pct)}")
    if decline < rules.upgrade_max_drawdown:
        upgrade.append(
            f"peak-to-trough decline {_shown(decline)} < {_limit(rules.upgrade_max_drawdown)}"
        )
    else:
        missing.append(
            f"peak-to-trough decline {_shown(decline)} ≥ {_limit(rules.upgrade_max_drawdown)}"
        )

    if missing:
        return TierDecision(current, current, False, "hold", tuple(missing), as_json)
    if index == len(TIER_LADDER) - 1:
        reasons = (*upgrade, f"already at {current}, the top of the ladder")
        return TierDecision(current, current, False, "hold", reasons, as_json)
    new = TIER_LADDER[index + 1]
    return TierDecision(current, new, True, "upgrade", tuple(upgrade), as_json)
