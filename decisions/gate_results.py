"""What each gate saved or cost, for one pool and one window: the loader around
``decisions.counterfactual``.

``gate_results(pool, start, end, now)`` loads, in a fixed number of queries whatever the number of
decisions (the engine configuration unless the pool was read with it, the decisions, the risk
tiers, the snapshots, the later ``defer`` recommendations):

- the skipped ``act`` decisions of the pool evaluated in [start, end), one per recommendation. A
  repeat skip updates its record in place (``evaluations``, ``last_evaluated_at``), so a record
  already counts once; a recommendation skipped for several reasons in turn is counted once,
  under the gate that had the last word: its processed skip, else the skip evaluated last. A
  recommendation the pool acted on later was not kept out; a ``duplicate_recommendation`` skip is
  no gate. Those without a current value are counted as ``no_value`` and not followed;
- the inputs each decision stored (``stored_inputs``): its record's columns and its trace;
- each entity's snapshots from enough sessions before the decision for the ATR up to ``now``,
  and the ``defer`` recommendations for it after the decision that the pool would take.

then hands them to the pure functions (the size without the gate, the monitor's path, the
sums). Interfaces: ``manage.py gate_results``, ``GET /api/v1/pools/{name}/gate-results/`` and the
pool dashboard's "What each gate saved or cost" panel.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation

from decisions.counterfactual import (
    GATE_REMOVAL,
    NOT_GATES,
    PERIODS,
    AtrWindows,
    BarHistory,
    GateResults,
    KeptOut,
    NoValue,
    Snapshot,
    follow,
    monitor_path,
    size_without_gate,
    summarize,
)
from decisions.engine import sizing_config
from decisions.models import DecisionOutcome, DecisionRecord, Recommendation, RecommendationAction
from decisions.sizing import ZERO, SizingInput
from portfolio.market_calendar import MARKET_TIME_ZONE, MarketCalendar, get_market_calendar
from portfolio.models import EngineConfig, MarketSnapshot, Pool, RiskTierConfig
from portfolio.risk_thresholds import ThresholdConfig
from portfolio.selectors import get_engine_config, rule_config
from portfolio.tiers import TierParams

__all__ = ["DEFAULT_DAYS", "WindowError", "atr_windows", "gate_results", "parse_window"]

#: The window when none is given: the last 30 days.
DEFAULT_DAYS = 30
_RECORD_FIELDS = (
    "id",
    "recommendation_id",
    "entity_id",
    "entity__sector",
    "outcome",
    "skip_reason",
    "processed",
    "confidence",
    "current_value",
    "risk_tier",
    "pool_exposure",
    "active_pool",
    "correlation",
    "report_sessions_away",
    "decision_trace",
    "evaluated_at",
    "last_evaluated_at",
)


# --- the window -------------------------------------------------------------------------------


class WindowError(ValueError):
    """A bad ``from`` / ``to``: ``errors`` maps each field to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _bound(text: str, *, end: bool) -> datetime:
    """A date ``YYYY-MM-DD`` is a whole New York day (``from`` its midnight, ``to`` the next
    midnight: the day is included); an ISO 8601 time is taken as is, UTC without an offset."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            if end:
                day += timedelta(days=1)
            return datetime.combine(day, time(0), tzinfo=MARKET_TIME_ZONE).astimezone(UTC)
        value = datetime.fromisoformat(text)
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("Enter a date YYYY-MM-DD (a New York day) or an ISO 8601 time.") from None


def parse_window(start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` from the ``from`` and ``to`` texts: ``to`` defaults to ``now``,
    ``from`` to ``DEFAULT_DAYS`` days before ``to``. Raises ``WindowError`` naming each bad
    field."""
    errors: dict[str, str] = {}
    parsed: dict[str, datetime] = {}
    for field, text in (("from", start), ("to", end)):
        if text is None or not text.strip():
            continue
        try:
            parsed[field] = _bound(text, end=field == "to")
        except ValueError as exc:
            errors[field] = str(exc)
    if errors:
        raise WindowError(errors)
    upper = parsed.get("to", now)
    try:
        lower = parsed.get("from") or upper - timedelta(days=DEFAULT_DAYS)
    except OverflowError:
        raise WindowError({"to": "Too early to count 30 days back: give a from."}) from None
    if lower >= upper:
        raise WindowError({"to": "Must be after from."})
    return lower, upper


# --- the stored inputs ------------------------------------------------------------------------


def atr_windows(config: EngineConfig) -> AtrWindows:
    """How many bars each ATR reads under the pool's configuration (see ``AtrWindows``)."""
    period = config.atr_period
    return AtrWindows(
        period=period,
        # The cycle loads this many sessions; ``MarketData.atr`` reads at most 3 × period.
        sizing=min(max(config.correlation_lookback_sessions, period) + 1, period * 3),
        entry=period + 1,
        monitor=period * 3,
    )


def _decimal(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


@dataclass(frozen=True)
class StoredInputs:
    """The sizer's inputs as the decision stored them, and what had to be assumed."""

    inputs: SizingInput
    notes: tuple[str, ...]


def stored_inputs(row: dict, bars: BarHistory, windows: AtrWindows) -> StoredInputs:
    """The sizer's inputs of one decision, from its columns (confidence, current value, active
    pool, pool exposure, correlation, report proximity) and its trace (the sector, the sectors
    held, the spendable cash; from the sizing waterfall when the sizer got that far, the sector's
    value and the ATR). What the decision did not store is assumed, and said in the notes: the
    ATR over the bars before the decision (as the cycle computes it), an empty sector, the
    active pool as spendable cash, no sector held; an existing commitment in the entity is
    never stored and taken as none."""
    trace = row["decision_trace"] if isinstance(row["decision_trace"], dict) else {}
    recommendation = trace.get("recommendation") or {}
    view = trace.get("pool") or {}
    sizing = trace.get("sizing") or {}
    steps = {
        step.get("step"): step for step in sizing.get("waterfall") or [] if isinstance(step, dict)
    }
    notes: list[str] = []
    active_pool = row["active_pool"]
    cash = _decimal(view.get("spendable_cash"))
    if cash is None:
        cash = active_pool
        notes.append("spendable cash not stored: the active pool")
    held = view.get("sectors_held")
    if not isinstance(held, list):
        held = []
        notes.append("sectors held not stored: none")
    sector_value = _decimal((steps.get("sector") or {}).get("sector_value"))
    if sector_value is None:
        sector_value = ZERO
        notes.append("sector value not stored: 0")
    atr = _decimal((steps.get("pool_exposure") or {}).get("atr"))
    if atr is None:
        atr = bars.atr_at(row["evaluated_at"], windows.period, windows.sizing)
        notes.append(
            f"ATR not stored: {atr} from the bars before the decision"
            if atr is not None
            else "ATR not stored and not enough bars before the decision"
        )
    correlation = row["correlation"]
    return StoredInputs(
        SizingInput(
            confidence=row["confidence"],
            current_value=row["current_value"],
            atr=atr,
            correlation=float(correlation) if correlation is not None else None,
            sector=str(recommendation.get("sector") or row["entity__sector"] or ""),
            sector_value=sector_value,
            held_sectors=frozenset(str(s) for s in held),
            report_sessions_away=row["report_sessions_away"],
            active_pool=active_pool,
            available_cash=cash,
            pool_exposure=row["pool_exposure"] or ZERO,
        ),
        tuple(notes),
    )


# --- the loader -------------------------------------------------------------------------------


class _SessionCloses:
    """Whether a snapshot was taken at or after its session's close (a complete daily bar),
    one calendar look-up per New York date. A date that is no session, or that the calendar
    does not cover, has no session to wait for: its snapshot counts as complete."""

    def __init__(self, calendar: MarketCalendar) -> None:
        self.calendar = calendar
        self.closes: dict[date, datetime | None] = {}

    def complete(self, at: datetime) -> bool:
        day = at.astimezone(MARKET_TIME_ZONE).date()
        if day not in self.closes:
            try:
                is_session = self.calendar.is_session(day)
                self.closes[day] = self.calendar.session_close(day) if is_session else None
            except ValueError:
                self.closes[day] = None
        close = self.closes[day]
        return close is None or at >= close


def _gate_records(rows: list[dict]) -> list[dict]:
    """One record per recommendation kept out (see the module docstring)."""
    by_recommendation: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_recommendation[row["recommendation_id"]].append(row)
    chosen = []
    for records in by_recommendation.values():
        if any(r["outcome"] != DecisionOutcome.SKIP for r in records):
            continue
        gates = [r for r in records if r["skip_reason"] not in NOT_GATES]
        if not gates:
            continue
        processed = [r for r in gates if r["processed"]]
        pick = processed or gates
        chosen.append(max(pick, key=lambda r: (r["last_evaluated_at"], r["id"])))
    return chosen


def gate_results(
    pool: Pool,
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    period: str = "day",
    config: EngineConfig | None = None,
    tier_rows: Iterable[RiskTierConfig] | None = None,
) -> GateResults:
    """The gate results of ``pool`` for the decisions evaluated in [start, end), followed up to
    ``now``, summed per skip reason and per ``period`` (``day`` or ``week``). ``config`` and
    ``tier_rows`` (every ``RiskTierConfig``): when the caller has them already (else read, or
    the configuration taken from ``select_related``)."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")
    config = config if config is not None else get_engine_config(pool)
    windows = atr_windows(config)
    thresholds = rule_config(ThresholdConfig, config, keep_defaults=("tighten_factor",))
    sizing_cfg = sizing_config(config)
    upper = min(end, now)
    skipped = DecisionRecord.objects.filter(
        pool=pool,
        action=RecommendationAction.ACT,
        outcome=DecisionOutcome.SKIP,
        evaluated_at__gte=start,
        evaluated_at__lt=upper,
    ).values("recommendation_id")
    rows = list(
        DecisionRecord.objects.filter(pool=pool, recommendation_id__in=skipped)
        .order_by("evaluated_at", "id")
        .values(*_RECORD_FIELDS)
    )
    records = [r for r in _gate_records(rows) if start <= r["evaluated_at"] < upper]
    no_value = [
        NoValue(r["recommendation_id"], r["skip_reason"], r["evaluated_at"])
        for r in records
        if r["current_value"] is None or r["current_value"] <= 0
    ]
    records = [r for r in records if r["current_value"] is not None and r["current_value"] > 0]
    if not records:
        return summarize([], no_value, start=start, end=end, now=now, period=period)

    rows_of_tiers = tier_rows if tier_rows is not None else RiskTierConfig.objects.all()
    tiers = {row.name: rule_config(TierParams, row) for row in rows_of_tiers}
    entities = sorted({r["entity_id"] for r in records})
    earliest = min(r["evaluated_at"] for r in records)
    # Calendar days enough for the longest ATR window of sessions before the first decision.
    history = timedelta(days=2 * max(windows.sizing, windows.entry, windows.monitor) + 10)
    closes = _SessionCloses(get_market_calendar(now))
    snapshots: dict[str, list[Snapshot]] = defaultdict(list)
    for entity, as_of, high, low, close in (
        MarketSnapshot.objects.filter(
            entity_id__in=entities, as_of__gte=earliest - history, as_of__lte=now
        )
        .order_by("entity_id", "as_of")
        .values_list("entity_id", "as_of", "high", "low", "close")
    ):
        snapshots[entity].append(Snapshot(as_of, high, low, close, closes.complete(as_of)))
    defers: dict[str, list[datetime]] = defaultdict(list)
    for entity, generated_at in (
        Recommendation.objects.filter(
            entity_id__in=entities,
            action=RecommendationAction.DEFER,
            mode__in=pool.accepted_modes,
            generated_at__gt=earliest,
            generated_at__lte=now,
        )
        .order_by("generated_at")
        .values_list("entity_id", "generated_at")
    ):
        defers[entity].append(generated_at)

    histories = {entity: BarHistory(snaps) for entity, snaps in snapshots.items()}
    # Each observation's ATR depends on the bars before it only: one path per entity, cut at
    # each decision.
    first_decision: dict[str, datetime] = {}
    for row in records:
        entity = row["entity_id"]
        first_decision[entity] = min(first_decision.get(entity, now), row["evaluated_at"])
    paths = {
        entity: monitor_path(snaps, first_decision[entity], windows)
        for entity, snaps in snapshots.items()
    }
    path_times = {entity: [o.at for o in path] for entity, path in paths.items()}
    outcomes = []
    for row in records:
        entity, decided_at, reason = row["entity_id"], row["evaluated_at"], row["skip_reason"]
        bars = histories.get(entity) or BarHistory(())
        stored = stored_inputs(row, bars, windows)
        tier = tiers[row["risk_tier"]]
        sizing = size_without_gate(stored.inputs, reason, tier, sizing_cfg)
        candidate = KeptOut(
            recommendation_id=row["recommendation_id"],
            entity=entity,
            skip_reason=reason,
            decided_at=decided_at,
            entry_value=row["current_value"],
            units=ZERO if sizing.rejected else sizing.units,
            tier=tier,
            entry_atr=bars.atr_at(decided_at, windows.period, windows.entry),
            path=paths.get(entity, ())[bisect_right(path_times.get(entity, []), decided_at) :],
            defers=tuple(at for at in defers.get(entity, []) if at > decided_at),
            sized_by=f"rejected: {sizing.reason}" if sizing.rejected else "sizer",
            notes=(GATE_REMOVAL[reason],) + stored.notes
            if reason in GATE_REMOVAL
            else stored.notes,
        )
        outcomes.append(follow(candidate, thresholds))
    return summarize(outcomes, no_value, start=start, end=end, now=now, period=period)
