"""A risk tier's parameters as a frozen value (the source, 'Risk Tier Auto-Adjustment').

Pure: the rows of ``risk_tier_configs`` become ``TierParams`` in ``portfolio.selectors``; the
sizer, the checks, the risk threshold manager and the rebalancer read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class TierParams:
    """A risk tier's parameters (the source's tier table); fractions are fractions.

    ``min_confidence`` 0.75 / 0.55 / 0.40, ``max_position_pct`` 0.05 / 0.10 / 0.15 of the
    active pool, ``stop_loss_atr_multiplier`` 1.5 / 2.0 / 2.5, ``reward_risk_ratio``
    2.0 / 1.5 / 1.2, ``max_sector_pct`` 0.20 / 0.30 / 0.40 and ``max_portfolio_heat``
    0.10 / 0.20 / 0.30 of the active pool, for conservative / moderate / aggressive.
    """

    name: str
    min_confidence: Decimal
    max_position_pct: Decimal
    stop_loss_atr_multiplier: Decimal
    reward_risk_ratio: Decimal
    max_sector_pct: Decimal
    max_portfolio_heat: Decimal
