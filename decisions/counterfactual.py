"""What each gate saved or cost: the commitments a skip kept out, followed on the later market.

For every ``act`` recommendation the engine skipped while it had a current value, this module
follows the commitment that would have been made, under the rules the engine applies to a real
one, from the decision to its exit or to the present, and sums the dollars per skip reason and
per period. Pure: frozen dataclasses in, frozen dataclasses out, ``Decimal`` money, no Django, no
clock (``decisions.gate_results`` loads the data; docs/decisions.md, "What each gate saved or
cost", states the method and its assumptions).

The size (``size_without_gate``) is the real sizer's (``decisions.sizing.size_commitment``) on
the inputs the decision stored, with the one gate that kept the commitment out removed
(``GATE_REMOVAL`` says how for each reason); a gate of the pre-execution checks stops before the
sizer, so its size is the sizer's answer on the stored inputs unchanged.

The path (``follow``) is the risk threshold monitor's (``decisions.loops``) on each later
snapshot, through the same pure functions and in the same order: the entry levels of
``portfolio.risk_levels.levels_at_entry`` (the books' levels at a fill), then for each
observation the crossing judged by the levels in force before it
(``portfolio.risk_thresholds.check_crossing``), then the levels moved by the observation
(``portfolio.risk_thresholds.update_levels``: re-evaluation, trailing; a stop never loosens). A
later ``defer`` recommendation for the entity exits it at the last value seen, as the decision
cycle's defer path would. The ATR of each step is the Wilder ATR
(``portfolio.indicators.average_true_range``) over the daily bars that step would have read
(``AtrWindows``).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from decisions.sizing import CommitmentSizeResult, SizingConfig, SizingInput, size_commitment
from decisions.vocabulary import SkipReason
from portfolio.indicators import average_true_range
from portfolio.risk_levels import levels_at_entry
from portfolio.risk_thresholds import (
    CommitmentLevels,
    Crossing,
    ThresholdConfig,
    check_crossing,
    update_levels,
)
from portfolio.tiers import TierParams

__all__ = [
    "GATE_REMOVAL",
    "NOT_GATES",
    "AtrWindows",
    "BarHistory",
    "ExitReason",
    "GateResults",
    "KeptOut",
    "NoValue",
    "Observation",
    "Outcome",
    "PeriodTotal",
    "ReasonTotal",
    "Snapshot",
    "atr_before",
    "follow",
    "monitor_path",
    "period_start",
    "signed_money",
    "size_without_gate",
    "summarize",
]

ZERO = Decimal("0")
CENT = Decimal("0.01")
NEW_YORK = ZoneInfo("America/New_York")
#: A limit (a fraction of the active pool) no commitment reaches: the limit of a removed gate.
NO_LIMIT = Decimal("1000000")
PERIODS = ("day", "week")

#: Skip reasons that are no gate: the recommendation was processed by another record.
NOT_GATES = frozenset({SkipReason.DUPLICATE_RECOMMENDATION})

#: How each skip reason's gate is removed before the sizer runs again (reasons not listed stop
#: before the sizer: the stored inputs are sized unchanged).
GATE_REMOVAL: dict[str, str] = {
    SkipReason.POSITION_LIMIT_REACHED: "sized as a new commitment (no existing value)",
    SkipReason.CORRELATION_TOO_HIGH: "sized without the correlation step (no correlation)",
    SkipReason.SECTOR_LIMIT_REACHED: "sized without the sector limit (empty sector, no limit)",
    SkipReason.REPORT_TOO_CLOSE: "sized without the report proximity (no report ahead)",
    SkipReason.INSUFFICIENT_HISTORY: "sized without the exposure estimate (ATR 0); levels "
    "from the first ATR the path gives",
    SkipReason.POOL_EXPOSURE_LIMIT: "sized without the exposure limit (no exposure, no cap)",
    SkipReason.INSUFFICIENT_CASH: "sized with the active pool as spendable cash",
    SkipReason.ZERO_UNITS: "not removable: the amount buys no whole unit",
    SkipReason.INSUFFICIENT_ACTIVE_POOL: "not removable: no active pool to size against",
}


# --- inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """One market snapshot of an entity as the loops read it: ``close`` is the value, ``high``
    and ``low`` feed the ATR. A session's last snapshot is its daily bar; ``complete`` says it
    was taken at or after the session's close, so it counts as a bar from its own time on (an
    intraday value counts only once its session is over)."""

    at: datetime
    high: Decimal
    low: Decimal
    close: Decimal
    complete: bool = False


@dataclass(frozen=True)
class Observation:
    """One observation of the risk threshold monitor: the value at ``at`` and the ATR it would
    have computed then (None: not enough bars, the stored ATR is kept)."""

    at: datetime
    value: Decimal
    atr: Decimal | None = None


@dataclass(frozen=True)
class AtrWindows:
    """How many daily bars each ATR reads, as the engine loads them (defaults: the engine's
    defaults, ATR period 14 and a correlation look-back of 30 sessions).

    ``sizing``: the decision cycle's bars (``max(correlation_lookback, period) + 1``, at most
    ``3 × period``);
    ``entry``: the books' bars at a fill (``period + 1``); ``monitor``: the risk threshold
    monitor's (``3 × period``).
    """

    period: int = 14
    sizing: int = 31
    entry: int = 15
    monitor: int = 42


@dataclass(frozen=True)
class KeptOut:
    """One commitment a gate kept out, ready to follow.

    ``entry_value`` is the current value the decision stored (the commitment is taken as filled
    there, at ``decided_at``); ``units`` the size the sizer gives with the gate removed
    (``size_without_gate``), 0 when it would not size one; ``entry_atr`` the ATR the books would
    have set the levels with (None: the levels wait for the first observation with an ATR);
    ``path`` the monitor's observations after the decision, oldest first; ``defers`` the times of
    later ``defer`` recommendations for the entity; ``notes`` what was assumed.
    """

    recommendation_id: str
    entity: str
    skip_reason: str
    decided_at: datetime
    entry_value: Decimal
    units: Decimal
    tier: TierParams
    entry_atr: Decimal | None = None
    path: tuple[Observation, ...] = ()
    defers: tuple[datetime, ...] = ()
    sized_by: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class NoValue:
    """A skipped ``act`` recommendation without a current value: nothing to follow."""

    recommendation_id: str
    skip_reason: str
    decided_at: datetime


# --- outputs ----------------------------------------------------------------------------------


class ExitReason(StrEnum):
    """How a followed commitment ended."""

    RISK_THRESHOLD = "risk_threshold"
    GAIN_TARGET = "gain_target"
    TRAILING = "trailing"
    DEFER = "defer"
    STILL_OPEN = "still_open"
    NOT_SIZED = "not_sized"


@dataclass(frozen=True)
class Outcome:
    """Where one kept-out commitment ended: at ``exit_at`` at ``exit_value``, ``exit_reason``
    (``still_open``: marked at the last value seen), and its result in dollars,
    units × (exit − entry)."""

    candidate: KeptOut
    exit_at: datetime
    exit_value: Decimal
    exit_reason: ExitReason
    result: Decimal
    levels: CommitmentLevels | None = None


@dataclass(frozen=True)
class ReasonTotal:
    """One skip reason over a window: how many commitments it kept out and what they would have
    made together (``not_sized`` of them would not have been sized anyway and count 0), and how
    many of its recommendations had no current value (not followed)."""

    reason: str
    kept_out: int
    result: Decimal
    no_value: int = 0
    not_sized: int = 0

    @property
    def label(self) -> str:
        try:
            return SkipReason(self.reason).label
        except ValueError:
            return self.reason


@dataclass(frozen=True)
class PeriodTotal:
    """One day or week (by the New York date of the decisions), per reason."""

    start: date
    kept_out: int
    result: Decimal
    reasons: tuple[ReasonTotal, ...]


@dataclass(frozen=True)
class GateResults:
    """Every kept-out commitment of a window with its outcome, summed per reason (largest
    |result| first) and per period (oldest first)."""

    start: datetime
    end: datetime
    now: datetime
    period: str
    outcomes: tuple[Outcome, ...]
    reasons: tuple[ReasonTotal, ...]
    periods: tuple[PeriodTotal, ...]
    kept_out: int
    result: Decimal
    no_value: int

    def as_json(self) -> dict[str, dict]:
        """One object keyed by skip reason: ``kept_out``, ``result`` (a string, in cents),
        ``no_value`` and ``not_sized``."""
        return {
            total.reason: {
                "kept_out": total.kept_out,
                "result": money(total.result),
                "no_value": total.no_value,
                "not_sized": total.not_sized,
            }
            for total in self.reasons
        }


def money(value: Decimal) -> str:
    """A dollar amount as a string in cents: ``-1240.50``."""
    return str(value.quantize(CENT))


def signed_money(value: Decimal) -> str:
    """A result for people, with its sign and thousands: ``+310.20``, ``−1,240.50``, ``0.00``."""
    cents = value.quantize(CENT)
    text = f"{abs(cents):,.2f}"
    return f"−{text}" if cents < 0 else f"+{text}" if cents > 0 else text


# --- the size ---------------------------------------------------------------------------------


def size_without_gate(
    inputs: SizingInput, reason: str, tier: TierParams, config: SizingConfig
) -> CommitmentSizeResult:
    """The sizer's answer on the stored ``inputs`` with the gate of ``reason`` removed
    (``GATE_REMOVAL``); the real ``size_commitment``, never a copy of it. A rejection means no
    commitment would have been made: another gate would have kept it out too."""
    if reason == SkipReason.POSITION_LIMIT_REACHED:
        inputs = replace(inputs, existing_value=ZERO)
    elif reason == SkipReason.CORRELATION_TOO_HIGH:
        inputs = replace(inputs, correlation=None)
    elif reason == SkipReason.SECTOR_LIMIT_REACHED:
        inputs = replace(inputs, sector_value=ZERO)
        tier = replace(tier, max_sector_pct=NO_LIMIT)
    elif reason == SkipReason.REPORT_TOO_CLOSE:
        inputs = replace(inputs, report_sessions_away=None)
    elif reason == SkipReason.INSUFFICIENT_HISTORY:
        inputs = replace(inputs, atr=inputs.atr if inputs.atr is not None else ZERO)
    elif reason == SkipReason.POOL_EXPOSURE_LIMIT:
        inputs = replace(inputs, pool_exposure=ZERO)
        tier = replace(tier, max_portfolio_heat=NO_LIMIT)
    elif reason == SkipReason.INSUFFICIENT_CASH:
        inputs = replace(inputs, available_cash=max(inputs.available_cash, inputs.active_pool))
    return size_commitment(inputs, tier, config)


# --- the ATR each step reads ------------------------------------------------------------------


def session_of(moment: datetime) -> date:
    """The New York date of an instant: the session a snapshot belongs to."""
    return moment.astimezone(NEW_YORK).date()


def _atr(bars: Sequence[Snapshot], period: int, count: int) -> Decimal | None:
    window = list(bars)[-count:]
    if len(window) < period + 1:
        return None
    return average_true_range(
        [b.high for b in window], [b.low for b in window], [b.close for b in window], period
    )


class BarHistory:
    """An entity's snapshots read as daily bars, for the ATR at any moment: each session's bar
    is its last snapshot; at a moment the sessions before its New York date count, and its own
    date once its last snapshot at or before the moment is ``complete`` (the session has
    closed), as the decision cycle, the books and the monitor read them. Memoised: many
    decisions of one entity read the same bars."""

    def __init__(self, snapshots: Iterable[Snapshot]) -> None:
        self.snapshots = sorted(snapshots, key=lambda s: s.at)
        self.times = [s.at for s in self.snapshots]
        last: dict[date, Snapshot] = {}
        for snap in self.snapshots:
            last[session_of(snap.at)] = snap
        self.days = sorted(last)
        self.bars = [last[day] for day in self.days]
        self._memo: dict[tuple, Decimal | None] = {}

    def atr_at(self, moment: datetime, period: int, count: int) -> Decimal | None:
        """The ATR read at ``moment`` over the last ``count`` daily bars (None: fewer than
        ``period + 1``)."""
        day = session_of(moment)
        before = bisect_left(self.days, day)
        seen = bisect_right(self.times, moment)
        own = self.snapshots[seen - 1] if seen else None
        own = own if own is not None and own.complete and session_of(own.at) == day else None
        key = (before, own.at if own is not None else None, period, count)
        if key not in self._memo:
            bars = self.bars[max(0, before - count) : before] + ([own] if own else [])
            self._memo[key] = _atr(bars, period, count)
        return self._memo[key]


def atr_before(
    snapshots: Sequence[Snapshot], moment: datetime, period: int, count: int
) -> Decimal | None:
    """The ATR read at ``moment`` over the last ``count`` daily bars of ``snapshots`` (see
    ``BarHistory``)."""
    return BarHistory(snapshots).atr_at(moment, period, count)


def monitor_path(
    snapshots: Sequence[Snapshot], after: datetime, windows: AtrWindows
) -> tuple[Observation, ...]:
    """The monitor's observations of the snapshots after ``after``, oldest first: each value
    with the ATR the monitor reads when it sees it (``atr_before`` at that snapshot, over
    ``windows.monitor`` bars: a daily bar at the close counts itself, an intraday value does
    not)."""
    done: list[Snapshot] = []  # the bars of the sessions before the current snapshot's date
    current_day: date | None = None
    current: Snapshot | None = None
    out = []
    for snap in sorted(snapshots, key=lambda s: s.at):
        day = session_of(snap.at)
        if day != current_day:
            if current is not None:
                done.append(current)
            current_day = day
        current = snap
        if snap.at <= after:
            continue
        bars = done[-windows.monitor :] + ([snap] if snap.complete else [])
        out.append(Observation(snap.at, snap.close, _atr(bars, windows.period, windows.monitor)))
    return tuple(out)


# --- the path ---------------------------------------------------------------------------------


def _entry_levels(candidate: KeptOut, atr: Decimal, highest: Decimal) -> CommitmentLevels:
    tier = candidate.tier
    levels = levels_at_entry(
        candidate.entry_value, atr, tier.stop_loss_atr_multiplier, tier.reward_risk_ratio
    )
    return CommitmentLevels(
        symbol=candidate.entity,
        entry_value=candidate.entry_value,
        risk_threshold=levels.risk_threshold,
        gain_target=levels.gain_target,
        atr=atr,
        highest_value=highest,
        trailing_active=False,
    )


def follow(candidate: KeptOut, thresholds: ThresholdConfig | None = None) -> Outcome:
    """Follow one kept-out commitment from its decision to its exit, or to the last
    observation (``still_open``).

    The entry: levels from ``entry_atr`` (``levels_at_entry``), the highest value the entry.
    Then, in time order (an observation before a defer at the same instant):

    - an observation while the commitment has no levels sets them from its ATR, if any, with no
      crossing judged (``portfolio.books.refresh_levels``);
    - an observation judges the crossing by the levels in force before it (``check_crossing``:
      the risk threshold, reported ``trailing`` once the stop trails, or the gain target) and
      then moves the levels (``update_levels`` with the tier's multipliers; no pool exposure, so
      no tightening); a crossing exits at the observed value;
    - a defer exits at the last value seen.

    The result is units × (exit value − entry value); a commitment of 0 units (``not_sized``)
    results in 0 at the decision.
    """
    thresholds = thresholds if thresholds is not None else ThresholdConfig()
    entry = candidate.entry_value
    if candidate.units <= 0:
        return Outcome(candidate, candidate.decided_at, entry, ExitReason.NOT_SIZED, ZERO)
    tier = candidate.tier
    levels = (
        _entry_levels(candidate, candidate.entry_atr, entry)
        if candidate.entry_atr is not None
        else None
    )
    events: list[tuple[datetime, int, Observation | None]] = [
        (o.at, 0, o) for o in candidate.path if o.at > candidate.decided_at
    ]
    events += [(at, 1, None) for at in candidate.defers if at > candidate.decided_at]
    events.sort(key=lambda event: (event[0], event[1]))
    last_at, last_value = candidate.decided_at, entry

    def ended(at: datetime, value: Decimal, reason: ExitReason) -> Outcome:
        result = candidate.units * (value - entry)
        return Outcome(candidate, at, value, reason, result, levels)

    for at, _, observation in events:
        if observation is None:
            return ended(at, last_value, ExitReason.DEFER)
        last_at, last_value = at, observation.value
        if levels is None:
            if observation.atr is not None:
                levels = _entry_levels(candidate, observation.atr, max(entry, observation.value))
            continue
        crossing = check_crossing(levels, observation.value)
        trailed = levels.trailing_active
        levels = update_levels(
            levels,
            observation.value,
            observation.atr,
            tier.stop_loss_atr_multiplier,
            tier.reward_risk_ratio,
            ZERO,
            thresholds,
        ).levels
        if crossing == Crossing.RISK_THRESHOLD:
            return ended(
                at, observation.value, ExitReason.TRAILING if trailed else ExitReason.RISK_THRESHOLD
            )
        if crossing == Crossing.GAIN_TARGET:
            return ended(at, observation.value, ExitReason.GAIN_TARGET)
    return ended(last_at, last_value, ExitReason.STILL_OPEN)


# --- the sums ---------------------------------------------------------------------------------


def period_start(moment: datetime, period: str) -> date:
    """The bucket of a decision: its New York date (``day``) or the Monday of that date's week
    (``week``)."""
    day = session_of(moment)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")


def _totals(outcomes: Iterable[Outcome], no_value: Iterable[NoValue]) -> tuple[ReasonTotal, ...]:
    kept: dict[str, int] = defaultdict(int)
    results: dict[str, Decimal] = defaultdict(lambda: ZERO)
    unsized: dict[str, int] = defaultdict(int)
    missing: dict[str, int] = defaultdict(int)
    for outcome in outcomes:
        reason = outcome.candidate.skip_reason
        kept[reason] += 1
        results[reason] += outcome.result
        if outcome.exit_reason == ExitReason.NOT_SIZED:
            unsized[reason] += 1
    for row in no_value:
        missing[row.skip_reason] += 1
    totals = [
        ReasonTotal(reason, kept[reason], results[reason], missing[reason], unsized[reason])
        for reason in set(kept) | set(missing)
    ]
    totals.sort(key=lambda t: (-abs(t.result), -t.kept_out, t.reason))
    return tuple(totals)


def summarize(
    outcomes: Iterable[Outcome],
    no_value: Iterable[NoValue] = (),
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    period: str = "day",
) -> GateResults:
    """Sum the outcomes per skip reason and per period (``period_start`` of each decision)."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")
    outcomes = tuple(
        sorted(outcomes, key=lambda o: (o.candidate.decided_at, o.candidate.recommendation_id))
    )
    no_value = tuple(no_value)
    buckets: dict[date, list[Outcome]] = defaultdict(list)
    missing: dict[date, list[NoValue]] = defaultdict(list)
    for outcome in outcomes:
        buckets[period_start(outcome.candidate.decided_at, period)].append(outcome)
    for row in no_value:
        missing[period_start(row.decided_at, period)].append(row)
    periods = tuple(
        PeriodTotal(
            start=day,
            kept_out=len(buckets[day]),
            result=sum((o.result for o in buckets[day]), ZERO),
            reasons=_totals(buckets[day], missing[day]),
        )
        for day in sorted(set(buckets) | set(missing))
    )
    return GateResults(
        start=start,
        end=end,
        now=now,
        period=period,
        outcomes=outcomes,
        reasons=_totals(outcomes, no_value),
        periods=periods,
        kept_out=len(outcomes),
        result=sum((o.result for o in outcomes), ZERO),
        no_value=len(no_value),
    )
