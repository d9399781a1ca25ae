"""The demo: a seeded sample data set, a paper pool and a shadow pool following it, and the
engine run over simulated sessions.

Everything goes through the same functions production uses (imports, ``create_pool``,
``change_engine_config``, ``create_pool_with_settings`` for the shadow, ``run_engine_pass``
with ``run_with_shadows``); only the clock is simulated. The summary is built from the
database afterwards, so it shows what the audit trail holds, not counters kept on the side;
the shadow's summary is built the same way, to be read beside the demo pool's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from django.db.models import Count

from decisions.engine import run_engine_pass
from decisions.imports import import_recommendations
from decisions.models import DecisionRecord, Recommendation
from decisions.replay import DEFAULT_EVERY_MINUTES, session_moments
from decisions.tooling.sample_data import (
    SampleDataSpec,
    generate_sample_data,
    last_completed_session,
)
from execution.models import Order
from execution.selectors import pool_as_of
from portfolio.actions import change_engine_config, create_pool
from portfolio.config_overrides import parse_overrides
from portfolio.imports import import_entities, import_reports, import_snapshots
from portfolio.market_calendar import get_market_calendar
from portfolio.models import Commitment, CommitmentStatus, LedgerTrigger, Pool
from portfolio.shadows import create_pool_with_settings, run_with_shadows, settings_that_differ

NEW_YORK = ZoneInfo("America/New_York")

#: The demo pool's settings beside the source's defaults, and why.
DEMO_POOL_SETTINGS = {
    # The source's $50 cap is a safety net for a first live run; on a $100,000 paper pool it
    # would round most entries to a unit or two, so the demo shows the sizing steps at $5,000.
    "absolute_commitment_cap": "5000",
}
#: The shadow pool that follows the demo pool, and its one changed setting: half as many
#: commitments at once, so the summary shows the same recommendations decided differently.
DEMO_SHADOW = "demo-shadow"
DEMO_SHADOW_SETTINGS = ("max_active_commitments=5",)


@dataclass
class DemoSummary:
    pool: str
    sessions: tuple[date, ...]
    passes: int
    recommendations_imported: int
    recommendations_seen: int
    decisions: Counter = field(default_factory=Counter)
    skip_reasons: Counter = field(default_factory=Counter)
    orders: Counter = field(default_factory=Counter)
    open_commitments: int = 0
    closed_commitments: int = 0
    realized_gain: Decimal = Decimal("0")
    total_value: Decimal = Decimal("0")
    active_pool: Decimal = Decimal("0")
    reserve_balance: Decimal = Decimal("0")
    cash: Decimal = Decimal("0")
    pool_exposure: Decimal = Decimal("0")
    starting_cash: Decimal = Decimal("0")
    exits: Counter = field(default_factory=Counter)
    siphons: int = 0
    siphoned: Decimal = Decimal("0")
    emergency_releases: int = 0
    breakers: Counter = field(default_factory=Counter)
    tier_changes: list[str] = field(default_factory=list)
    tier: str = ""
    #: The shadow pool's summary (built the same way), and the settings it changes.
    shadow: DemoSummary | None = None
    shadow_of: str = ""
    changed_settings: list[str] = field(default_factory=list)


#: The demo's pass interval within a session: the cadence a replay assumes by default.
DEMO_PASS_EVERY = timedelta(minutes=DEFAULT_EVERY_MINUTES)


def pass_times(session: date) -> list[datetime]:
    """When the demo runs a pass in a session: the engine's session cadence
    (``decisions.replay.session_moments``) at ``DEMO_PASS_EVERY``: 30 minutes before the open
    (where the execution window turns entries away), 15 minutes after it, then every 30
    minutes until the close, and the close (an early close simply has fewer passes). A replay
    of the demo pool walks the same moments."""
    return session_moments(get_market_calendar(), session, DEMO_PASS_EVERY)


def run_demo(
    directory: Path,
    *,
    now: datetime,
    seed: int = 7,
    sessions: int = 20,
    cash: Decimal = Decimal("100000"),
    tier: str = "moderate",
    progress: Callable[[str], None] = print,
    with_shadow: bool = True,
) -> DemoSummary:
    """Generate and import the sample data, create the demo pool (and, ``with_shadow``, its
    shadow pool) and run the engine."""
    calendar = get_market_calendar(now)
    end = last_completed_session(calendar, now)
    files = generate_sample_data(
        SampleDataSpec(seed=seed, simulated_sessions=sessions, end=end), directory
    )
    progress(f"Sample data (seed {seed}) written to {directory}")
    for label, result in (
        ("entities", import_entities(files.entities)),
        ("bars", import_snapshots(files.snapshots)),
        ("report dates", import_reports(files.reports)),
        ("recommendations", import_recommendations(files.recommendations)),
    ):
        progress(f"  imported {result.created + result.updated:>6} {label}")
    pool = create_pool(
        "demo",
        mode="simulation",
        cash=cash,
        tier=tier,
        now=now,
        actor="demo",
        reason="the demo's paper pool",
        via="command",
    )
    change_engine_config(
        pool,
        DEMO_POOL_SETTINGS,
        actor="demo",
        reason="a cap that lets the demo's sizing show every step",
        now=now,
        via="command",
    )
    progress(
        f"Pool 'demo': simulation, paper broker, {tier} tier, cash {cash:,.0f}, "
        f"absolute commitment cap {DEMO_POOL_SETTINGS['absolute_commitment_cap']}"
    )
    shadow, changed = None, []
    if with_shadow:
        shadow = create_pool_with_settings(
            DEMO_SHADOW,
            shadow_of=pool,
            overrides=parse_overrides(DEMO_SHADOW_SETTINGS),
            now=now,
            actor="demo",
            reason="the demo's shadow pool: the same recommendations, one setting changed",
            via="command",
        )
        changed = settings_that_differ(shadow, pool).sentences
        progress(f"Pool '{DEMO_SHADOW}': a paper shadow of 'demo' that {'; '.join(changed)}")
    passes = 0
    for index, session in enumerate(files.simulated_sessions, 1):
        day = Counter()
        shadow_day = Counter()
        filled = 0
        events: list[str] = []
        for at in pass_times(session):
            result, shadows = run_with_shadows(
                pool.pk, lambda pool_id, at=at: run_engine_pass(pool_id, at), loop="engine pass"
            )
            passes += 1
            day.update(result.cycle.outcomes)
            filled += result.order_statuses.get("filled", 0)
            events += [e for loop in result.loops for e in loop.events if _worth_showing(e)]
            for run in shadows:
                if not run.failed:
                    shadow_day.update(run.result.cycle.outcomes)
        held = dict(
            Commitment.objects.filter(status=CommitmentStatus.OPEN)
            .values_list("pool_id")
            .annotate(n=Count("id"))
            .values_list("pool_id", "n")
        )
        line = (
            f"  [{index:>2}/{len(files.simulated_sessions)}] {session}  "
            f"act {day['act']:>3}  defer {day['defer']:>3}  skip {day['skip']:>3}  "
            f"fills {filled:>3}  open {held.get(pool.pk, 0):>2}"
        )
        if shadow is not None:
            line += (
                f"  │ shadow: act {shadow_day['act']:>3}  skip {shadow_day['skip']:>3}  "
                f"open {held.get(shadow.pk, 0):>2}"
            )
        progress(line)
        for event in events:
            progress(f"          · {event}")
    summary = summarize(pool, files.simulated_sessions, passes, now, cash)
    if shadow is not None:
        summary.shadow = summarize(shadow, files.simulated_sessions, passes, now, shadow.cash)
        summary.shadow.shadow_of = pool.name
        summary.shadow.changed_settings = changed
    return summary


def _worth_showing(event: str) -> bool:
    """Progress shows the guardians at work: exits, breakers, tier changes, reserve moves."""
    return not event.startswith("siphoned")


def summarize(
    pool: Pool, sessions: tuple[date, ...], passes: int, now: datetime, starting_cash: Decimal
) -> DemoSummary:
    """Read the demo's outcome back from the audit trail."""
    pool.refresh_from_db()
    decisions = DecisionRecord.objects.filter(pool=pool)
    state = pool_as_of(pool, now)
    closed = Commitment.objects.filter(pool=pool, status=CommitmentStatus.CLOSED)
    ledger = pool.ledger.all()
    return DemoSummary(
        pool=pool.name,
        sessions=sessions,
        passes=passes,
        recommendations_imported=Recommendation.objects.count(),
        recommendations_seen=decisions.values("recommendation").distinct().count(),
        decisions=Counter(
            dict(
                decisions.values_list("outcome").annotate(n=Count("id")).values_list("outcome", "n")
            )
        ),
        skip_reasons=Counter(
            dict(
                decisions.filter(outcome="skip")
                .values_list("skip_reason")
                .annotate(n=Count("id"))
                .values_list("skip_reason", "n")
            )
        ),
        orders=Counter(
            dict(
                Order.objects.filter(pool=pool)
                .values_list("status")
                .annotate(n=Count("id"))
                .values_list("status", "n")
            )
        ),
        open_commitments=len(state.positions),
        closed_commitments=closed.count(),
        realized_gain=sum((c.realized_gain for c in closed), Decimal("0")),
        total_value=state.total_value,
        active_pool=state.active_pool,
        reserve_balance=pool.reserve_balance,
        cash=pool.cash,
        pool_exposure=state.pool_exposure,
        starting_cash=starting_cash,
        exits=Counter(
            dict(
                Order.objects.filter(pool=pool, side="sell", status="filled")
                .values_list("reason")
                .annotate(n=Count("id"))
                .values_list("reason", "n")
            )
        ),
        siphons=ledger.filter(trigger=LedgerTrigger.PROFIT_SIPHON).count(),
        siphoned=sum(
            ledger.filter(trigger=LedgerTrigger.PROFIT_SIPHON).values_list("amount", flat=True),
            Decimal("0"),
        ),
        emergency_releases=ledger.filter(trigger=LedgerTrigger.EMERGENCY_LIQUIDATION).count(),
        breakers=Counter(pool.breaker_events.values_list("trigger_type", flat=True)),
        tier_changes=[
            f"{h.changed_at.astimezone(NEW_YORK):%Y-%m-%d} {h.previous_tier} → {h.new_tier} "
            f"({h.reason})"
            for h in pool.tier_history.exclude(trigger="initial").order_by("changed_at")
        ],
        tier=pool.risk_tier,
    )


def side_by_side(summary: DemoSummary) -> list[tuple[str, str, str]]:
    """The headline figures of the demo pool and its shadow, one (label, pool, shadow) row
    each, for the demo command's summary."""
    shadow = summary.shadow
    if shadow is None:
        return []

    def decisions(s: DemoSummary) -> str:
        return ", ".join(
            f"{k} {s.decisions[k]}" for k in ("act", "defer", "skip") if s.decisions[k]
        )

    def orders(s: DemoSummary) -> str:
        return f"{s.orders.get('filled', 0)} filled of {sum(s.orders.values())}"

    def value(s: DemoSummary) -> str:
        return f"{s.total_value:,.2f} ({s.total_value - s.starting_cash:+,.2f})"

    rows = [
        ("Decisions", decisions),
        ("Orders", orders),
        ("Open / closed", lambda s: f"{s.open_commitments} / {s.closed_commitments}"),
        ("Realized gain", lambda s: f"{s.realized_gain:+,.2f}"),
        ("Pool value", value),
        ("Reserve", lambda s: f"{s.reserve_balance:,.2f}"),
        ("Pool exposure", lambda s: f"{s.pool_exposure:,.2f}"),
        ("Risk tier", lambda s: s.tier),
    ]
    skips = sorted(set(summary.skip_reasons) | set(shadow.skip_reasons))
    rows += [
        (f"  skip {reason}", lambda s, reason=reason: str(s.skip_reasons.get(reason, 0)))
        for reason in skips
        if summary.skip_reasons.get(reason, 0) != shadow.skip_reasons.get(reason, 0)
    ]
    return [(label, show(summary), show(shadow)) for label, show in rows]
