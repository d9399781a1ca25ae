"""The decision engine's vocabulary: outcomes and skip reasons, pure (no Django).

The pre-execution checks (``decisions.rules``) and the commitment sizer (``decisions.sizing``)
return these members; ``decisions.models`` builds the database choices from them, so the rules,
the ``execution_decisions`` table, the admin filters and the exports share one list. Values are
the source's names where it has one (page 6, "Pre-Execution Check Sequence" and "Commitment
Sizing"); a value stored in the database never changes.

Members are ``str``: a trace, a JSON export or a database write sees the plain value.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DecisionOutcome", "LabelledStrEnum", "SkipReason"]


class LabelledStrEnum(StrEnum):
    """A ``StrEnum`` whose members carry a human-readable ``label`` beside their value."""

    label: str

    def __new__(cls, value: str, label: str) -> LabelledStrEnum:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label
        return member

    def __repr__(self) -> str:
        # Counters of outcomes and reasons are logged and returned by tasks as ``dict(...)``:
        # they read as the plain values they were before the enum.
        return repr(self._value_)

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        """``(value, label)`` pairs in definition order, as Django's ``choices`` take them."""
        return [(member.value, member.label) for member in cls]


class DecisionOutcome(LabelledStrEnum):
    """How the engine's evaluation of one recommendation ended."""

    ACT = "act", "Act"
    DEFER = "defer", "Defer"
    SKIP = "skip", "Skip"


class SkipReason(LabelledStrEnum):
    """Every reason the engine gives for not acting; the source's names where it has one."""

    CIRCUIT_BREAKER_ACTIVE = "circuit_breaker_active", "Circuit breaker active"
    POOL_HALTED = "pool_halted", "Pool halted by an operator"
    ENTITY_COOLDOWN_ACTIVE = "entity_cooldown_active", "Entity in its loss cooldown"
    RECONCILIATION_HOLD = "reconciliation_hold", "Entity held: books and broker differ"
    OUTSIDE_EXECUTION_WINDOW = "outside_execution_window", "Outside the execution window"
    INSUFFICIENT_CONFIDENCE = "insufficient_confidence", "Confidence below the tier minimum"
    DUPLICATE_RECOMMENDATION = "duplicate_recommendation", "Already processed"
    MULTIPLE_DECLINING = "multiple_declining_commitments", "Most commitments declining"
    MAX_COMMITMENTS_REACHED = "max_commitments_reached", "Maximum commitments reached"
    NO_CURRENT_VALUE = "no_current_value", "No current value"
    NO_OPEN_COMMITMENT = "no_open_commitment", "No open commitment to exit"
    EXIT_ALREADY_PENDING = "exit_already_pending", "An exit order is already pending"
    ORDER_UNSETTLED = "order_unsettled", "An order of the entity is unknown or submitting"
    # Sizer rejections
    INSUFFICIENT_ACTIVE_POOL = "insufficient_active_pool", "No active pool to size against"
    POSITION_LIMIT_REACHED = "position_limit_reached", "Commitment already at its maximum size"
    CORRELATION_TOO_HIGH = "correlation_too_high", "Correlation with holdings too high"
    SECTOR_LIMIT_REACHED = "sector_limit_reached", "Sector at its limit"
    REPORT_TOO_CLOSE = "performance_report_imminent", "Performance report within one session"
    INSUFFICIENT_HISTORY = "insufficient_history", "Not enough bars for ATR"
    POOL_EXPOSURE_LIMIT = "pool_exposure_limit", "Pool exposure would exceed its maximum"
    ZERO_UNITS = "zero_units", "Rounds to zero units"
    INSUFFICIENT_CASH = "insufficient_cash", "Not enough cash"
