"""Pre-execution checks (source, page 6, "Pre-Execution Check Sequence"): pure functions.

For an ``act`` recommendation the checks run in the source's order and the first failure wins:

a. circuit breaker (and the operator's halt, and the entity's loss cooldown)
   then, not in the source: the reconciliation hold (an entity whose units at the broker differ
   from the books gets no entry until an operator acknowledges the difference)
b. execution window
c. confidence gate (confidence ≥ the tier's ``min_confidence``)
d. deduplication
e. declining commitments (more than 50 % of commitments down more than 2 %)
f. max active commitments

then the current value and the commitment sizer. A ``defer`` takes the simpler path of the
source: window, deduplication, the open commitment, a full-quantity exit.

Nothing here reads the clock, the database or the cache: the engine loads the facts, these
functions judge them, and a denial is a ``CheckResult`` with a reason, never an exception.
Outcomes and reasons are members of ``decisions.vocabulary`` (``DecisionOutcome``,
``SkipReason``), the list the ``execution_decisions`` choices are built from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from functools import cached_property

from decisions.sizing import (
    ZERO,
    CommitmentSizeResult,
    SizingConfig,
    SizingInput,
    TierParams,
    size_commitment,
)
from decisions.vocabulary import DecisionOutcome, SkipReason
from portfolio.circuit_breaker import is_ticker_cooled_down


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check, with what it looked at and the limit it applied."""

    name: str
    passed: bool
    reason: SkipReason | str = ""
    observed: object = None
    limit: object = None
    detail: str = ""

    def as_trace(self) -> dict:
        return {
            "check": self.name,
            "passed": self.passed,
            "reason": self.reason,
            "observed": _jsonable(self.observed),
            "limit": _jsonable(self.limit),
            "detail": self.detail,
        }


def _number(value: Decimal) -> str:
    """A Decimal without the zeros its database column pads it with: 0.550000 → 0.55."""
    return format(value.normalize(), "f")


def _jsonable(value: object) -> object:
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, datetime):
        return str(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class CheckConfig:
    """The engine configuration numbers the checks use."""

    max_active_commitments: int = 10
    declining_commitments_share: Decimal = Decimal("0.5")
    declining_loss_pct: Decimal = Decimal("0.02")


@dataclass(frozen=True)
class PoolView:
    """The pool as the checks and the sizer see it during one cycle.

    Commitments include entry orders decided but not yet filled (``pending``), so a second
    cycle that runs before the worker cannot double-spend. Values are currency; ``cash`` is
    what new commitments may spend (cash − reserve − pending entry costs).
    """

    tier: TierParams
    total_value: Decimal
    reserve_balance: Decimal
    cash: Decimal
    halted: bool
    active_breakers: tuple[str, ...]
    breaker_until: datetime | None
    entity_cooldowns: Mapping[str, datetime]
    in_execution_window: bool
    active_commitments: int
    declining_commitments: int
    sector_values: Mapping[str, Decimal]
    pool_exposure: Decimal
    commitment_values: Mapping[str, Decimal] = field(default_factory=dict)
    deducted: Decimal = ZERO
    #: Entities held reduce-only by an open reconciliation event: no entry, exits pass.
    reduce_only: frozenset[str] = frozenset()
    #: Entities with an order ``unknown`` or ``submitting``: no new order, either side, until
    #: it is settled.
    unsettled: frozenset[str] = frozenset()

    @property
    def active_pool(self) -> Decimal:
        """Capital sizing may use: total pool value − reserve (source: compute_active_pool),
        less what earlier ``act`` decisions of the same cycle already committed."""
        return self.total_value - self.reserve_balance - self.deducted

    # Cached: a view is frozen, and a cycle reads these for every candidate until the next act.
    @cached_property
    def held_sectors(self) -> frozenset[str]:
        return frozenset(s for s, v in self.sector_values.items() if v > 0)

    @cached_property
    def _summary(self) -> dict:
        return {
            "risk_tier": self.tier.name,
            "total_value": str(self.total_value),
            "reserve_balance": str(self.reserve_balance),
            "active_pool": str(self.active_pool),
            "deducted_this_cycle": str(self.deducted),
            "spendable_cash": str(self.cash),
            "active_commitments": self.active_commitments,
            "declining_commitments": self.declining_commitments,
            "pool_exposure": str(self.pool_exposure),
            "sectors_held": sorted(self.held_sectors),
        }

    def summary(self) -> dict:
        """The pool's state as the trace records it (a fresh dict each call)."""
        return dict(self._summary)


@dataclass(frozen=True)
class Candidate:
    """One recommendation with the market facts the engine looked up for it."""

    recommendation_id: str
    symbol: str
    sector: str
    action: str
    confidence: Decimal
    current_value: Decimal | None
    atr: Decimal | None = None
    correlation: float | None = None
    correlation_holdings: int = 0
    report_sessions_away: int | None = None
    already_processed: bool = False
    open_units: Decimal = ZERO
    exit_pending: bool = False


@dataclass(frozen=True)
class Evaluation:
    """The engine's verdict on one candidate: ``act``, ``defer`` or ``skip`` with a reason.

    ``processed`` is True once the recommendation passed the deduplication check: it is then
    done for this pool whatever came after.
    """

    outcome: DecisionOutcome
    skip_reason: SkipReason | str
    processed: bool
    checks: tuple[CheckResult, ...]
    sizing: CommitmentSizeResult | None = None
    exit_units: Decimal = ZERO

    def trace(self, candidate: Candidate, pool: PoolView) -> dict:
        trace = {
            "outcome": self.outcome,
            "skip_reason": self.skip_reason,
            "processed": self.processed,
            "recommendation": {
                "id": candidate.recommendation_id,
                "entity": candidate.symbol,
                "sector": candidate.sector,
                "action": candidate.action,
                "confidence": str(candidate.confidence),
                "current_value": _jsonable(candidate.current_value),
            },
            "pool": pool.summary(),
            "checks": [check.as_trace() for check in self.checks],
        }
        if self.sizing is not None:
            trace["sizing"] = self.sizing.as_trace()
        if self.exit_units:
            trace["exit_units"] = str(self.exit_units)
        return trace


# --- the checks, in the source's order --------------------------------------------------------


def check_circuit_breaker(pool: PoolView, symbol: str, now: datetime) -> CheckResult:
    """(a) Skip while a breaker is active, the pool is halted, or the entity is cooling down."""
    if pool.active_breakers:
        return CheckResult(
            "circuit_breaker",
            False,
            SkipReason.CIRCUIT_BREAKER_ACTIVE,
            observed=list(pool.active_breakers),
            limit=pool.breaker_until,
            detail=f"Active breaker(s) {', '.join(pool.active_breakers)} until "
            f"{pool.breaker_until}",
        )
    if pool.halted:
        return CheckResult(
            "circuit_breaker", False, SkipReason.POOL_HALTED, observed=True, detail="Pool halted"
        )
    if not is_ticker_cooled_down(pool.entity_cooldowns, symbol, now):
        until = pool.entity_cooldowns[symbol]
        return CheckResult(
            "circuit_breaker",
            False,
            SkipReason.ENTITY_COOLDOWN_ACTIVE,
            observed=symbol,
            limit=until,
            detail=f"{symbol} in its loss cooldown until {until}",
        )
    return CheckResult("circuit_breaker", True, observed=[], detail="No breaker, halt or cooldown")


def check_reconciliation_hold(pool: PoolView, symbol: str) -> CheckResult:
    """After (a), not in the source: skip an entry in an entity held reduce-only because
    position reconciliation found its units at the broker differing from the books, until an
    operator acknowledges the difference (docs/decisions.md, "Reconciliation hold")."""
    if symbol in pool.reduce_only:
        return CheckResult(
            "reconciliation",
            False,
            SkipReason.RECONCILIATION_HOLD,
            observed=symbol,
            limit="reduce_only",
            detail=f"{symbol} held reduce-only: the broker's units differ from the books "
            "(open reconciliation event)",
        )
    return CheckResult(
        "reconciliation", True, observed=symbol, detail="No open reconciliation event"
    )


def check_order_settled(pool: PoolView, symbol: str) -> CheckResult | None:
    """Before every other check, not in the source: an entity with an order whose outcome is
    not known yet (``unknown``, ``submitting``) takes no new order, act or defer, until that
    one is settled; the recommendation is not processed and is evaluated again at the next
    cycle. Recorded only when it stops the recommendation (None otherwise)."""
    if symbol not in pool.unsettled:
        return None
    return CheckResult(
        "order_settled",
        False,
        SkipReason.ORDER_UNSETTLED,
        observed=symbol,
        detail=f"An order of {symbol} is unknown or submitting: no new order until it is settled",
    )


def check_execution_window(in_window: bool) -> CheckResult:
    """(b) Skip outside the exchange's session (holidays and early closes included)."""
    if in_window:
        return CheckResult("execution_window", True, observed=True, detail="Session open")
    return CheckResult(
        "execution_window",
        False,
        SkipReason.OUTSIDE_EXECUTION_WINDOW,
        observed=False,
        detail="The exchange is closed",
    )


def check_confidence(confidence: Decimal, tier: TierParams) -> CheckResult:
    """(c) Confidence must be at least the tier's minimum (equal passes)."""
    passed = confidence >= tier.min_confidence
    return CheckResult(
        "confidence",
        passed,
        "" if passed else SkipReason.INSUFFICIENT_CONFIDENCE,
        observed=confidence,
        limit=tier.min_confidence,
        detail=f"{_number(confidence)} {'≥' if passed else '<'} {tier.name} minimum "
        f"{_number(tier.min_confidence)}",
    )


def check_duplicate(already_processed: bool) -> CheckResult:
    """(d) A recommendation is processed once per pool."""
    if already_processed:
        return CheckResult(
            "deduplication",
            False,
            SkipReason.DUPLICATE_RECOMMENDATION,
            observed=True,
            detail="Already processed for this pool",
        )
    return CheckResult("deduplication", True, observed=False, detail="First evaluation")


def check_declining_commitments(pool: PoolView, config: CheckConfig) -> CheckResult:
    """(e) Halt entries when more than the configured share of commitments is declining.

    A commitment declines when its unrealized loss exceeds ``declining_loss_pct`` (2 %) of its
    entry value; the share must be strictly above ``declining_commitments_share`` (50 %).
    """
    total = pool.active_commitments
    declining = pool.declining_commitments
    share = Decimal(declining) / Decimal(total) if total else ZERO
    passed = share <= config.declining_commitments_share
    return CheckResult(
        "declining_commitments",
        passed,
        "" if passed else SkipReason.MULTIPLE_DECLINING,
        observed=f"{declining}/{total}",
        limit=config.declining_commitments_share,
        detail=f"{declining} of {total} commitment(s) down more than "
        f"{_number(config.declining_loss_pct * 100)} %",
    )


def check_max_commitments(pool: PoolView, config: CheckConfig) -> CheckResult:
    """(f) Skip when the pool already holds the maximum number of commitments."""
    passed = pool.active_commitments < config.max_active_commitments
    return CheckResult(
        "max_commitments",
        passed,
        "" if passed else SkipReason.MAX_COMMITMENTS_REACHED,
        observed=pool.active_commitments,
        limit=config.max_active_commitments,
        detail=f"{pool.active_commitments} of {config.max_active_commitments} commitments",
    )


# --- the two paths ----------------------------------------------------------------------------


def _skip(reason: SkipReason, checks: list[CheckResult], processed: bool, **kw) -> Evaluation:
    return Evaluation(DecisionOutcome.SKIP, reason, processed, tuple(checks), **kw)


def evaluate_act(
    candidate: Candidate,
    pool: PoolView,
    checks_config: CheckConfig,
    sizing_config: SizingConfig,
    now: datetime,
) -> Evaluation:
    """Run checks (a)–(f), then the sizer, for an ``act`` recommendation; the reconciliation
    hold right after (a), the last of the checks about the entity's trading state; an entity
    with an unsettled order first of all (``check_order_settled``)."""
    unsettled = check_order_settled(pool, candidate.symbol)
    if unsettled is not None:
        return _skip(unsettled.reason, [unsettled], processed=False)
    checks: list[CheckResult] = []
    for check in (
        lambda: check_circuit_breaker(pool, candidate.symbol, now),
        lambda: check_reconciliation_hold(pool, candidate.symbol),
        lambda: check_execution_window(pool.in_execution_window),
        lambda: check_confidence(candidate.confidence, pool.tier),
    ):
        result = check()
        checks.append(result)
        if not result.passed:
            return _skip(result.reason, checks, processed=False)
    dedupe = check_duplicate(candidate.already_processed)
    checks.append(dedupe)
    if not dedupe.passed:
        return _skip(dedupe.reason, checks, processed=False)
    for check in (
        lambda: check_declining_commitments(pool, checks_config),
        lambda: check_max_commitments(pool, checks_config),
    ):
        result = check()
        checks.append(result)
        if not result.passed:
            return _skip(result.reason, checks, processed=True)
    if candidate.current_value is None or candidate.current_value <= 0:
        checks.append(
            CheckResult(
                "current_value",
                False,
                SkipReason.NO_CURRENT_VALUE,
                detail="No market snapshot at or before the cycle's time",
            )
        )
        return _skip(SkipReason.NO_CURRENT_VALUE, checks, processed=True)
    sizing = size_commitment(
        SizingInput(
            confidence=candidate.confidence,
            current_value=candidate.current_value,
            atr=candidate.atr,
            correlation=candidate.correlation,
            sector=candidate.sector,
            sector_value=pool.sector_values.get(candidate.sector, ZERO),
            held_sectors=pool.held_sectors,
            report_sessions_away=candidate.report_sessions_away,
            active_pool=pool.active_pool,
            available_cash=pool.cash,
            pool_exposure=pool.pool_exposure,
            existing_value=pool.commitment_values.get(candidate.symbol, ZERO),
        ),
        pool.tier,
        sizing_config,
    )
    if sizing.rejected:
        return _skip(sizing.reason, checks, processed=True, sizing=sizing)
    return Evaluation(DecisionOutcome.ACT, "", True, tuple(checks), sizing=sizing)


def evaluate_defer(candidate: Candidate, pool: PoolView) -> Evaluation:
    """The source's simpler ``defer`` path: window, deduplication, the open commitment.

    Exits are never blocked by a breaker or a halt: they only reduce risk. An entity with an
    unsettled order takes no exit either until it is settled (``check_order_settled``).
    """
    unsettled = check_order_settled(pool, candidate.symbol)
    if unsettled is not None:
        return _skip(unsettled.reason, [unsettled], processed=False)
    checks: list[CheckResult] = []
    window = check_execution_window(pool.in_execution_window)
    checks.append(window)
    if not window.passed:
        return _skip(window.reason, checks, processed=False)
    dedupe = check_duplicate(candidate.already_processed)
    checks.append(dedupe)
    if not dedupe.passed:
        return _skip(dedupe.reason, checks, processed=False)
    if candidate.open_units <= 0:
        checks.append(
            CheckResult(
                "open_commitment",
                False,
                SkipReason.NO_OPEN_COMMITMENT,
                detail=f"No open commitment in {candidate.symbol}",
            )
        )
        return _skip(SkipReason.NO_OPEN_COMMITMENT, checks, processed=True)
    if candidate.exit_pending:
        checks.append(
            CheckResult(
                "open_commitment",
                False,
                SkipReason.EXIT_ALREADY_PENDING,
                observed=str(candidate.open_units),
                detail="An exit order for this commitment is already pending",
            )
        )
        return _skip(SkipReason.EXIT_ALREADY_PENDING, checks, processed=True)
    checks.append(
        CheckResult(
            "open_commitment",
            True,
            observed=str(candidate.open_units),
            detail=f"Exit all {candidate.open_units} units",
        )
    )
    return Evaluation(
        DecisionOutcome.DEFER, "", True, tuple(checks), exit_units=candidate.open_units
    )


def apply_act(pool: PoolView, candidate: Candidate, sizing: CommitmentSizeResult) -> PoolView:
    """The pool after an ``act``: cost deducted, commitment, sector and exposure added.

    The source deducts the estimated cost "from the in-memory active pool to prevent
    over-allocation across concurrent recommendation evaluations within the same cycle".
    Total value is unchanged (cash became a commitment of the same value); the deduction is
    what keeps later candidates of the cycle from sizing against capital already committed.
    """
    sectors = dict(pool.sector_values)
    sectors[candidate.sector] = sectors.get(candidate.sector, ZERO) + sizing.dollar_amount
    values = dict(pool.commitment_values)
    is_new = values.get(candidate.symbol, ZERO) <= 0
    values[candidate.symbol] = values.get(candidate.symbol, ZERO) + sizing.dollar_amount
    return replace(
        pool,
        cash=pool.cash - sizing.dollar_amount,
        deducted=pool.deducted + sizing.dollar_amount,
        active_commitments=pool.active_commitments + (1 if is_new else 0),
        sector_values=sectors,
        commitment_values=values,
        pool_exposure=pool.pool_exposure + (sizing.new_heat or ZERO),
    )
