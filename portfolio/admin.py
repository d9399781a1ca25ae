"""Admin of pools, entities, market data, commitments, the pool-level audit tables, the
configuration (engine settings, execution risk limits, risk tiers) and the operator actions'
audit trail.

Audit tables are read-only. Every change an operator makes here goes through one audited action
of ``portfolio.actions`` with ``via="admin"`` and the user's username as the actor: creating a
pool, the actions of a pool's page (halt, resume, set the risk tier, clear a circuit breaker)
and saving a configuration form. Each asks for a reason and leaves an ``OperatorAction`` row,
listed read-only under "Operator actions". A pool's cash, reserve balance, risk tier and halt are
read-only in its form. The state panel reads the pool through the read model
(``execution.selectors.pool_as_of``), as the engine does.

The operator console lives here too: the pools overview (the first link of the admin index)
and each pool's dashboard, with its charts (server-rendered SVG, ``project/charts.py``), its
open commitments and their levels, why nothing was bought and its last events; the actions
of a pool show a confirmation that repeats what will happen before they run. Each console page
runs a fixed number of queries, whatever the number of decisions and orders.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from decisions.counterfactual import signed_money
from decisions.gate_results import DEFAULT_DAYS as GATE_RESULTS_DAYS
from decisions.gate_results import gate_results
from decisions.models import DecisionOutcome, DecisionRecord, SkipReason
from execution.models import Order, OrderStatus
from execution.selectors import pool_as_of
from portfolio import actions
from portfolio.actions import ActionResult
from portfolio.config import ENGINE_CONFIG_FIELDS, POOL_RISK_FIELDS, TIER_FIELDS
from portfolio.config_versions import tier_rows
from portfolio.errors import ActionError
from portfolio.heartbeat import DECISION_CYCLE, LOOPS
from portfolio.market_calendar import get_market_calendar
from portfolio.models import (
    BreakerType,
    CircuitBreakerEvent,
    Commitment,
    EngineConfig,
    Entity,
    Fill,
    LoopRun,
    MarketSnapshot,
    OperatorAction,
    PerformanceReport,
    Pool,
    PoolRiskConfig,
    PoolSnapshot,
    ReconciliationEvent,
    ReconciliationStatus,
    ReserveLedgerEntry,
    RiskTier,
    RiskTierConfig,
    RiskTierHistory,
    TelemetryCounter,
)
from portfolio.selectors import PoolState, in_force
from portfolio.shadows import SHADOW_FAILURES, settings_that_differ
from portfolio.valuation import PositionView
from project import charts
from project.admin_tools import (
    EMPTY,
    NEW_YORK,
    ExactSearchMixin,
    LargeTableAdminMixin,
    ReadOnlyAuditAdmin,
    admin_link,
    change_url,
    changelist_link,
    format_eastern,
    format_fraction,
    format_money,
    key_value_table,
    pretty_json,
)

logger = logging.getLogger(__name__)

VIA = "admin"

# The admin index opens with the operator console's pools overview.
admin.site.index_template = "admin/portfolio/console_index.html"

#: The longest reason an action takes (``OperatorAction.reason``).
REASON_MAX_LENGTH = OperatorAction._meta.get_field("reason").max_length
#: ``Pool.halt_reason`` less the `` (<username>)`` that ``halt_pool`` appends (a username is at
#: most 150 characters), so a long reason is never cut short on the pool.
HALT_REASON_MAX_LENGTH = Pool._meta.get_field("halt_reason").max_length - len(" ()") - 150


def reason_field(*, help_text: str, max_length: int = REASON_MAX_LENGTH) -> forms.CharField:
    """The free-text reason an operator action requires."""
    return forms.CharField(
        required=True,
        max_length=max_length,
        help_text=help_text,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )


def show_action_errors(form: forms.BaseForm, error: ActionError) -> None:
    """Each problem of a refused action on its form field, the others above the form."""
    for key, message in error.errors.items():
        if key in form.fields:
            form.add_error(key, message)
        else:
            form.add_error(None, f"{key}: {message}" if key else message)


# --- pool state -------------------------------------------------------------------------------


def render_pool_state(state: PoolState) -> SafeString:
    """The state panel at the top of the pool's change page and of its action pages."""
    cap = state.exposure_cap
    if cap > 0:
        exposure = (
            f"{format_money(state.pool_exposure)} of {format_money(cap)} "
            f"({format_fraction(state.exposure_ratio)} of the cap: "
            f"{format_fraction(state.tier.max_portfolio_heat)} of the active pool)"
        )
    else:
        exposure = f"{format_money(state.pool_exposure)} (no cap: the active pool is empty)"
    breakers = state.breakers
    pool_wide = (
        f"{', '.join(breakers.pool_wide)} until {format_eastern(breakers.until)}"
        if breakers.pool_wide
        else "none"
    )
    cooldowns = (
        ", ".join(
            f"{symbol} until {format_eastern(until)}"
            for symbol, until in sorted(breakers.entity_cooldowns.items())
        )
        or "none"
    )
    halted = f"yes: {state.halt_reason}" if state.halted and state.halt_reason else state.halted
    items: list[tuple[str, Any]] = [
        ("Risk tier", RiskTier(state.tier.name).label),
        ("Halted", halted),
        ("Cash (reserve included)", format_money(state.cash)),
        ("Reserve balance", format_money(state.reserve_balance)),
        ("Total pool value", format_money(state.total_value)),
        ("Active pool", format_money(state.active_pool)),
        ("Pool exposure", exposure),
        ("Active circuit breakers", pool_wide),
        ("Entity cooldowns", cooldowns),
        ("Open commitments", len(state.positions)),
    ]
    if state.pending:
        items.append(("Orders not yet settled", len(state.pending)))
    if state.unvalued:
        items.append(("Valued at entry (no current value)", ", ".join(state.unvalued)))
    return key_value_table(items)


# --- pools ------------------------------------------------------------------------------------


class PoolAddForm(forms.ModelForm):
    """A new pool: its starting cash and tier are set once here; afterwards they move only
    through the engine and the operator actions. It is created by ``actions.create_pool``,
    which needs a reason."""

    reason = reason_field(help_text="Why the pool is created; recorded in the operator actions.")

    class Meta:
        model = Pool
        fields = ("name", "mode", "adapter", "cash", "risk_tier")


# --- pool operator actions --------------------------------------------------------------------


class HaltPoolForm(forms.Form):
    """Halt a pool: a reason is required."""

    reason = reason_field(
        max_length=HALT_REASON_MAX_LENGTH,
        help_text="Stored on the pool with your username. New entries stop; exits still flow.",
    )


class ResumePoolForm(forms.Form):
    """Resume a pool: a reason is required."""

    reason = reason_field(
        help_text="Why entries may resume; recorded in the operator actions with your username."
    )


class SetRiskTierForm(forms.Form):
    """Set a pool's risk tier by hand (trigger ``manual``)."""

    tier = forms.ChoiceField(choices=RiskTier.choices, label="Risk tier")
    reason = reason_field(
        help_text="Recorded in the tier history with your username. Applies from the next cycle.",
    )


class ClearBreakerForm(forms.Form):
    """Clear one breaker in force: a pool-wide type, or one entity's cooldown.

    ``breaker`` is ``<type>`` or ``<type>:<SYMBOL>``. It is a text field shown as radio buttons
    rather than a choice field so that a breaker that expired or was cleared between the page
    and the submit reaches ``clear_breaker``, which answers with nothing cleared.
    """

    breaker = forms.CharField(label="Breaker", widget=forms.RadioSelect)
    reason = reason_field(
        help_text="Why the breaker may end early; recorded on the event with your username.",
    )

    def __init__(self, *args: Any, choices: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["breaker"].widget.choices = choices

    @property
    def breaker_type(self) -> str:
        """The breaker type of the choice (valid input only)."""
        return self.cleaned_data["breaker"].partition(":")[0]

    @property
    def entity(self) -> str | None:
        """The entity of a cooldown choice, None for a pool-wide breaker (valid input only)."""
        return self.cleaned_data["breaker"].partition(":")[2] or None


def breaker_choices(pool: Pool, now: datetime) -> list[tuple[str, str]]:
    """The breakers in force for ``pool`` at ``now`` as (value, label) pairs, one per type and
    entity, with the latest expiry of each. One query (``in_force``)."""
    labels = dict(BreakerType.choices)
    until: dict[tuple[str, str | None], datetime] = {}
    rows = in_force(pool, now).values_list("trigger_type", "entity_id", "expires_at")
    for kind, symbol, expires in rows:
        key = (kind, symbol)
        until[key] = max(expires, until.get(key, expires))
    choices = []
    for (kind, symbol), expires in until.items():
        label = labels.get(kind, kind) + (f": {symbol}" if symbol else "")
        value = f"{kind}:{symbol}" if symbol else kind
        choices.append((value, f"{label}, until {format_eastern(expires)}"))
    return sorted(choices)


@dataclass(frozen=True)
class ActionOutcome:
    """What an operator action did: ``changed`` False shows the form again with ``message``."""

    changed: bool
    message: str


@dataclass(frozen=True)
class PoolAction:
    """One operator action of the pool page: ``name`` names its URL (``<id>/<name>/`` with
    dashes, ``admin:portfolio_pool_<name>``) and its ``PoolAdmin.apply_<name>`` call; the rest
    is the text of its form page."""

    name: str
    label: str
    submit: str
    form_class: type[forms.Form]
    intro: str


HALT = PoolAction(
    "halt",
    "Halt",
    "Halt the pool",
    HaltPoolForm,
    "The next cycle skips every entry of the pool (pool_halted). Exits, the risk threshold "
    "monitor and the loops keep running.",
)
RESUME = PoolAction(
    "resume", "Resume", "Resume the pool", ResumePoolForm, "New entries resume from the next cycle."
)
SET_TIER = PoolAction(
    "set_tier",
    "Set risk tier",
    "Set the risk tier",
    SetRiskTierForm,
    "A manual tier change, recorded in the tier history with the trigger manual. The tier "
    "controller may move it again at its next evaluation.",
)
CLEAR_BREAKER = PoolAction(
    "clear_breaker",
    "Clear circuit breaker",
    "Clear the breaker",
    ClearBreakerForm,
    "Ends a breaker in force early. The event keeps its trigger figures and records who "
    "cleared it, when and why.",
)
POOL_ACTIONS = (HALT, RESUME, SET_TIER, CLEAR_BREAKER)


# --- the operator console ---------------------------------------------------------------------

#: An order ``submitting`` for longer than this without an answer is stuck.
STUCK_AFTER = timedelta(minutes=2)
#: Sessions of pool snapshots drawn on the dashboard's charts.
CHART_SESSIONS = 120
#: Sessions of closes drawn on each commitment's price line.
PRICE_SESSIONS = 30
#: Rows of each "last …" table of the dashboard.
RECENT_ROWS = 10
#: A decision cycle older than this many polling intervals, the exchange open, is stale (as
#: ``/healthz`` judges it).
STALE_INTERVALS = 3
#: The loops' short names on the console.
LOOP_LABELS = {
    DECISION_CYCLE: "decision cycle",
    "risk_threshold_monitor": "monitor",
    "performance_loop": "performance",
    "risk_tier_scheduler": "tier scheduler",
    "rebalancer": "rebalancer",
}
#: From this fraction of a limit (exposure cap, daily loss limit) on, the pool needs a look.
NEAR_LIMIT = Decimal("0.8")
ZERO = Decimal("0")


@dataclass(frozen=True)
class Attention:
    """One thing about a pool that needs an operator's look: ``level`` is ``alert`` (act now)
    or ``warn`` (watch); ``text`` says it in words, so colour is never the only signal."""

    level: str
    text: str


@dataclass(frozen=True)
class LoopAge:
    """The last run of one loop of a pool: None when it never ran."""

    loop: str
    finished_at: datetime | None
    age: timedelta | None
    stale: bool


@dataclass(frozen=True)
class OrderProblems:
    """Orders of a pool whose outcome is ``unknown`` (reconcile) or that are stuck
    ``submitting``."""

    unknown: int = 0
    stuck: int = 0


@dataclass(frozen=True)
class PoolGlance:
    """A pool at a glance: the read model's state, the limits it is measured against, its
    order problems, its loops and what needs attention. ``state`` is None when the pool could
    not be valued (the page still opens)."""

    pool: Pool
    state: PoolState | None
    config: EngineConfig
    problems: OrderProblems
    loops: tuple[LoopAge, ...]
    attention: tuple[Attention, ...]

    @property
    def daily_loss_limit(self) -> Decimal:
        """``daily_loss_pct`` × the total value (currency)."""
        return self.config.daily_loss_pct * self.state.total_value if self.state else ZERO

    @property
    def daily_loss_ratio(self) -> Decimal:
        """The day's loss as a fraction of its limit (0 on a gaining day)."""
        if self.state is None or self.daily_loss_limit <= 0:
            return ZERO
        return max(-self.state.daily_gain, ZERO) / self.daily_loss_limit

    @property
    def daily_change(self) -> Decimal | None:
        """The day's gain as a fraction of the value at the previous close."""
        if self.state is None:
            return None
        start = self.state.total_value - self.state.daily_gain
        return self.state.daily_gain / start if start > 0 else None

    @property
    def reserve_fraction(self) -> Decimal | None:
        """The reserve as a fraction of the total value."""
        if self.state is None or self.state.total_value <= 0:
            return None
        return self.state.reserve_balance / self.state.total_value

    @property
    def level(self) -> str:
        """``alert``, ``warn`` or ``ok``: the worst of ``attention``."""
        levels = {item.level for item in self.attention}
        return "alert" if "alert" in levels else "warn" if "warn" in levels else "ok"


def order_problems(pool_ids: list[int], now: datetime) -> dict[int, OrderProblems]:
    """Orders ``unknown`` and stuck ``submitting`` (for more than ``STUCK_AFTER``, or past an
    expired lease where orders carry one), per pool. One query, served by the (pool, status)
    index whatever the number of orders."""
    cutoff = now - STUCK_AFTER
    stuck = Q(status=OrderStatus.SUBMITTING) & (
        Q(submitted_at__lt=cutoff) | Q(submitted_at__isnull=True, updated_at__lt=cutoff)
    )
    if "lease_expires_at" in {field.name for field in Order._meta.get_fields()}:
        stuck |= Q(status=OrderStatus.SUBMITTING, lease_expires_at__lt=now)
    unknown = Q(status=OrderStatus.UNKNOWN)
    rows = (
        Order.objects.filter(pool_id__in=pool_ids)
        .filter(unknown | stuck)
        .values("pool_id")
        .annotate(unknown=Count("id", filter=unknown), stuck=Count("id", filter=stuck))
        .order_by()
    )
    return {row["pool_id"]: OrderProblems(row["unknown"], row["stuck"]) for row in rows}


def loop_ages(
    pool_ids: list[int], configs: Mapping[int, EngineConfig], now: datetime, in_session: bool
) -> dict[int, tuple[LoopAge, ...]]:
    """The age of the last run of each loop of each pool (``LOOPS`` order; a loop that never
    ran has no age). The decision cycle is stale past ``STALE_INTERVALS`` polling intervals
    while the exchange is open. One query."""
    finished: dict[int, dict[str, datetime]] = {pool_id: {} for pool_id in pool_ids}
    for pool_id, loop, at in LoopRun.objects.filter(pool_id__in=pool_ids).values_list(
        "pool_id", "loop", "last_finished_at"
    ):
        finished[pool_id][loop] = at
    ages = {}
    for pool_id, runs in finished.items():
        config = configs.get(pool_id)
        limit = timedelta(
            seconds=STALE_INTERVALS * (config.polling_interval_seconds if config else 60)
        )
        rows = []
        for loop in LOOPS:
            at = runs.get(loop)
            age = max(now - at, timedelta(0)) if at else None
            stale = loop == DECISION_CYCLE and in_session and (age is None or age > limit)
            rows.append(LoopAge(loop, at, age, stale))
        ages[pool_id] = tuple(rows)
    return ages


def pool_attention(
    state: PoolState | None,
    config: EngineConfig,
    problems: OrderProblems,
    loops: tuple[LoopAge, ...],
) -> tuple[Attention, ...]:
    """What needs an operator's look, worst first, in words."""
    items: list[Attention] = []
    if state is None:
        return (Attention("alert", "cannot be valued: see the logs"),)
    if state.halted:
        items.append(Attention("alert", f"halted: {state.halt_reason or 'no reason given'}"))
    if state.breakers.pool_wide:
        left = format_duration(state.breakers.until - state.now)
        items.append(
            Attention(
                "alert", f"breaker in force: {', '.join(state.breakers.pool_wide)} ({left} left)"
            )
        )
    if problems.unknown:
        items.append(Attention("alert", f"{problems.unknown} order(s) unknown: reconcile"))
    if problems.stuck:
        items.append(Attention("alert", f"{problems.stuck} order(s) stuck submitting"))
    limit = config.daily_loss_pct * state.total_value
    loss = max(-state.daily_gain, ZERO)
    if limit > 0 and loss >= limit:
        items.append(Attention("alert", "daily loss at its limit"))
    elif limit > 0 and loss >= NEAR_LIMIT * limit:
        items.append(Attention("warn", "daily loss near its limit"))
    if state.exposure_cap > 0 and state.exposure_ratio >= 1:
        items.append(Attention("alert", "exposure above its cap"))
    elif state.exposure_cap > 0 and state.exposure_ratio >= NEAR_LIMIT:
        items.append(Attention("warn", "exposure near its cap"))
    if state.breakers.entity_cooldowns:
        items.append(
            Attention("warn", f"{len(state.breakers.entity_cooldowns)} entity cooldown(s)")
        )
    for loop in loops:
        if loop.stale:
            items.append(Attention("warn", f"{LOOP_LABELS.get(loop.loop, loop.loop)} is late"))
    if state.unvalued:
        items.append(Attention("warn", f"no current value: {', '.join(state.unvalued)}"))
    return tuple(items)


def format_duration(value: timedelta | None) -> str:
    """A duration as ``2 h 05 min``, ``4 min 10 s`` or ``12 s``."""
    if value is None:
        return EMPTY
    seconds = max(int(value.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours >= 48:
        return f"{hours // 24} d {hours % 24} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


def pool_glances(pools: list[Pool], now: datetime, **options: Any) -> list[PoolGlance]:
    """Each pool at ``now`` through the read model. Three queries for all the pools (their
    engine configurations, order problems, loop runs) and ``pool_as_of``'s handful per pool:
    nothing grows with the number of decisions or orders."""
    ids = [pool.pk for pool in pools]
    configs = {config.pool_id: config for config in EngineConfig.objects.filter(pool_id__in=ids)}
    problems = order_problems(ids, now)
    ages = loop_ages(ids, configs, now, get_market_calendar(now).is_open(now))
    glances = []
    for pool in pools:
        config = configs.get(pool.pk) or EngineConfig(pool=pool)
        try:
            state = pool_as_of(pool, now, config=config, **options)
        except Exception:  # one pool that cannot be valued must not hide the others
            logger.exception("console: could not value pool %s", pool.pk)
            state = None
        found = problems.get(pool.pk, OrderProblems())
        glances.append(
            PoolGlance(
                pool,
                state,
                config,
                found,
                ages[pool.pk],
                pool_attention(state, config, found, ages[pool.pk]),
            )
        )
    return glances


def meter(ratio: Decimal | None, text: str, *, warn: Decimal = NEAR_LIMIT) -> SafeString:
    """A small horizontal meter of ``ratio`` (a fraction of a limit) with its text beside it;
    ``warn`` and ``alert`` classes from ``NEAR_LIMIT`` and 1, and the words carry the same."""
    if ratio is None:
        return format_html("{}", text)
    level = "alert" if ratio >= 1 else "warn" if ratio >= warn else "ok"
    width = min(max(float(ratio), 0.0), 1.0) * 100
    return format_html(
        '<span class="console-meter meter-{}" title="{}"><span style="width:{}%"></span></span> {}',
        level,
        f"{float(ratio) * 100:.0f} % of the limit",
        f"{width:.0f}",
        text,
    )


def glance_cells(glance: PoolGlance) -> dict[str, Any]:
    """The overview's cells of one pool, formatted."""
    state = glance.state
    cells: dict[str, Any] = {
        "glance": glance,
        "dashboard_url": reverse("admin:portfolio_pool_dashboard", args=[glance.pool.pk]),
        "mode": glance.pool.get_mode_display(),
        "tier": RiskTier(glance.pool.risk_tier).label,
        "problems": glance.problems,
        "loops": [
            (LOOP_LABELS.get(loop.loop, loop.loop), format_duration(loop.age), loop.stale)
            for loop in glance.loops
        ],
    }
    if state is None:
        return cells
    change = glance.daily_change
    cells.update(
        {
            "breakers": [
                (
                    e.type + (f" {e.entity}" if e.entity else ""),
                    format_duration(e.expires_at - state.now),
                )
                for e in state.breakers.events
            ],
            "value": format_money(state.total_value),
            "change": (
                f"{'+' if state.daily_gain >= 0 else ''}{format_money(state.daily_gain)}"
                + (
                    f" ({'+' if change >= 0 else ''}{format_fraction(change)})"
                    if change is not None
                    else ""
                )
            ),
            "change_sign": "up" if state.daily_gain > 0 else "down" if state.daily_gain < 0 else "",
            "reserve": (
                f"{format_money(state.reserve_balance)} "
                f"({format_fraction(glance.reserve_fraction)})"
            ),
            "exposure": meter(
                state.exposure_ratio if state.exposure_cap > 0 else None,
                f"{format_money(state.pool_exposure)} of {format_money(state.exposure_cap)}",
            ),
            "daily_loss": meter(
                glance.daily_loss_ratio,
                f"{format_money(max(-state.daily_gain, ZERO))} of "
                f"{format_money(glance.daily_loss_limit)}",
            ),
            "commitments": len(state.positions),
        }
    )
    return cells


@dataclass(frozen=True)
class LevelDistance:
    """How far the current value is from a level: a fraction of the current value and a
    number of ATRs (None without an ATR); positive while the level is not reached."""

    level: Decimal
    fraction: Decimal
    atrs: Decimal | None

    @property
    def reached(self) -> bool:
        return self.fraction <= 0

    @property
    def text(self) -> str:
        """``4.2 % · 1.85 ATR``."""
        atrs = f" · {self.atrs:.2f} ATR" if self.atrs is not None else ""
        return f"{self.fraction * 100:.1f} %{atrs}"


def level_distance(
    current: Decimal | None, level: Decimal | None, atr: Decimal | None, *, above: bool
) -> LevelDistance | None:
    """The distance from ``current`` to ``level``, counted positive while the value has not
    reached it (a gain target ``above`` the value, a risk threshold below it)."""
    if current is None or level is None or current <= 0:
        return None
    gap = level - current if above else current - level
    return LevelDistance(level, gap / current, gap / atr if atr else None)


@dataclass(frozen=True)
class CommitmentView:
    """An open commitment on the dashboard, with its distances and its price line."""

    position: PositionView
    to_threshold: LevelDistance | None
    to_target: LevelDistance | None
    price_line: SafeString


def commitment_views(state: PoolState) -> list[CommitmentView]:
    """The open commitments with the distance to each level and a price line of the last
    ``PRICE_SESSIONS`` closes with entry, risk threshold and gain target drawn on it."""
    views = []
    for p in sorted(state.positions, key=lambda p: p.symbol):
        closes: list[float | None] = [
            float(close) for _, _, close in state.market.bars.get(p.symbol, [])[-PRICE_SESSIONS:]
        ]
        if p.current_value is not None:
            closes.append(float(p.current_value))
        levels = [charts.Level("entry", float(p.entry_value), "muted")]
        if p.risk_threshold is not None:
            levels.append(charts.Level("risk threshold", float(p.risk_threshold), "alert"))
        if p.gain_target is not None:
            levels.append(charts.Level("gain target", float(p.gain_target), "good"))
        views.append(
            CommitmentView(
                p,
                level_distance(p.current_value, p.risk_threshold, p.atr, above=False),
                level_distance(p.current_value, p.gain_target, p.atr, above=True),
                mark_safe(charts.price_line(p.symbol, closes, levels)),
            )
        )
    return views


def pool_charts(
    snapshots: list[PoolSnapshot], config: EngineConfig, heat: Mapping[str, Decimal]
) -> list[SafeString]:
    """The four charts of a pool over its snapshots (oldest first): value and its high-water
    line; the decline from that peak against the tier-downgrade and emergency lines; the
    reserve as a fraction of the value against the 20 % / 30 % marks; the exposure against its
    cap (the tier's ``max_portfolio_heat`` × the active pool of each session)."""
    labels = [snapshot.session.isoformat() for snapshot in snapshots]
    values = [float(s.total_value) for s in snapshots]
    reserve = [
        float(s.reserve_balance / s.total_value) if s.total_value > 0 else None for s in snapshots
    ]
    cap = [float(heat.get(s.risk_tier, ZERO) * s.active_pool) for s in snapshots]

    def percent(value: float) -> str:
        return f"{value * 100:.0f} %"

    return [
        mark_safe(
            charts.line_chart(
                "value",
                "Pool value",
                labels,
                [
                    charts.Series("value", tuple(values)),
                    charts.Series("high-water", tuple(charts.running_max(values)), "muted", True),
                ],
            )
        ),
        mark_safe(
            charts.line_chart(
                "decline",
                "Decline from peak",
                labels,
                [charts.Series("decline", tuple(charts.decline_from_peak(values)), "alert")],
                levels=[
                    charts.Level(
                        f"tier downgrade {percent(float(config.tier_downgrade_drawdown))}",
                        float(config.tier_downgrade_drawdown),
                        "warn",
                    ),
                    charts.Level(
                        f"emergency {percent(float(config.emergency_drawdown_pct))}",
                        float(config.emergency_drawdown_pct),
                        "alert",
                    ),
                ],
                y_format=percent,
                floor=0.0,
            )
        ),
        mark_safe(
            charts.line_chart(
                "reserve",
                "Reserve / value",
                labels,
                [charts.Series("reserve", tuple(reserve), "good")],
                levels=[
                    charts.Level(
                        f"{percent(float(config.tier_upgrade_reserve_pct))} tier upgrade",
                        float(config.tier_upgrade_reserve_pct),
                        "muted",
                    ),
                    charts.Level(
                        f"{percent(float(config.high_water_pct))} high water",
                        float(config.high_water_pct),
                        "warn",
                    ),
                ],
                y_format=percent,
                floor=0.0,
            )
        ),
        mark_safe(
            charts.line_chart(
                "exposure",
                "Exposure",
                labels,
                [
                    charts.Series("exposure", tuple(float(s.pool_exposure) for s in snapshots)),
                    charts.Series("cap", tuple(cap), "alert", True),
                ],
                floor=0.0,
            )
        ),
    ]


@dataclass(frozen=True)
class SkipCount:
    """How often one skip reason stopped the pool's decisions in a period, with the link to
    those decisions."""

    reason: str
    label: str
    decisions: int
    evaluations: int
    url: str


def skip_counts(pool: Pool, start: datetime, end: datetime | None) -> list[SkipCount]:
    """The skip reasons of the pool's decisions evaluated in [start, end), most frequent first,
    each with the link to the filtered decision list. One query over the period's decisions
    (the (pool, evaluated_at) index), never a count of the whole table."""
    rows = DecisionRecord.objects.filter(
        pool=pool, outcome=DecisionOutcome.SKIP, evaluated_at__gte=start
    )
    if end is not None:
        rows = rows.filter(evaluated_at__lt=end)
    counted = (
        rows.values("skip_reason")
        .annotate(decisions=Count("id"), evaluations=Sum("evaluations"))
        .order_by("-decisions", "skip_reason")
    )
    labels = dict(SkipReason.choices)
    base = reverse("admin:decisions_decisionrecord_changelist")
    out = []
    for row in counted:
        query = {
            "pool__id__exact": pool.pk,
            "outcome__exact": DecisionOutcome.SKIP,
            "skip_reason__exact": row["skip_reason"],
            "evaluated_at__gte": start.astimezone(NEW_YORK).isoformat(sep=" "),
        }
        if end is not None:
            query["evaluated_at__lt"] = end.astimezone(NEW_YORK).isoformat(sep=" ")
        out.append(
            SkipCount(
                row["skip_reason"],
                labels.get(row["skip_reason"], row["skip_reason"]),
                row["decisions"],
                row["evaluations"] or 0,
                f"{base}?{urlencode({k: str(v) for k, v in query.items()})}",
            )
        )
    return out


def last_session_bounds(pool: Pool) -> tuple[datetime, datetime] | None:
    """The New York day of the pool's latest decision, as [midnight, next midnight): "the
    last session" of the skip reasons. One query (the (pool, evaluated_at) index)."""
    latest = (
        DecisionRecord.objects.filter(pool=pool)
        .order_by("-evaluated_at")
        .values_list("evaluated_at", flat=True)
        .first()
    )
    if latest is None:
        return None
    day = latest.astimezone(NEW_YORK).date()
    start = datetime.combine(day, datetime.min.time(), tzinfo=NEW_YORK)
    return start, datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=NEW_YORK)


# --- shadow pools beside the pool they follow --------------------------------------------------


@dataclass(frozen=True)
class ShadowColumn:
    """One pool of a followed pool's group on the dashboard: the followed pool or one of its
    shadows, with its value, its day, its decisions in the window and the settings it
    changes from the followed pool (none for the followed pool itself)."""

    pool: Pool
    cells: dict[str, Any]
    dashboard_url: str
    is_current: bool
    decisions: dict[str, int]
    top_skips: list[tuple[str, int]]
    differs: list[str]
    failures: int = 0


def shadow_group(
    pool: Pool,
    glance: PoolGlance,
    now: datetime,
    window: tuple[datetime, datetime] | None,
) -> list[ShadowColumn]:
    """The followed pool and its shadows side by side (whichever of them ``pool`` is), for
    the dashboard; empty for a pool that follows none and has no shadow (one query then).
    Otherwise a few queries per shadow (its read model) and four for the group: the
    decisions in ``window`` by pool and outcome, the tiers' rows, the shadows' failures."""
    leader_id = pool.shadow_of_id or pool.pk
    members = list(
        Pool.objects.filter(Q(pk=leader_id) | Q(shadow_of_id=leader_id))
        .select_related("engine_config")
        .order_by("name")
    )
    if len(members) < 2:
        return []
    members.sort(key=lambda p: (p.shadow_of_id is not None, p.name))
    others = [p for p in members if p.pk != pool.pk]
    glances = {g.pool.pk: g for g in pool_glances(others, now)} | {pool.pk: glance}
    ids = [p.pk for p in members]
    counts: dict[int, Counter] = {pk: Counter() for pk in ids}
    skips: dict[int, Counter] = {pk: Counter() for pk in ids}
    if window is not None:
        for pool_id, outcome, reason, n in (
            DecisionRecord.objects.filter(
                pool_id__in=ids, evaluated_at__gte=window[0], evaluated_at__lt=window[1]
            )
            .values_list("pool_id", "outcome", "skip_reason")
            .annotate(n=Count("id"))
            .order_by()
        ):
            counts[pool_id][outcome] += n
            if reason:
                skips[pool_id][reason] += n
    failures = dict(
        TelemetryCounter.objects.filter(pool_id__in=ids, metric=SHADOW_FAILURES)
        .values_list("pool_id")
        .annotate(n=Sum("total"))
        .values_list("pool_id", "n")
    )
    tiers = tier_rows()
    leader = members[0]
    columns = []
    for member in members:
        member_glance = glances[member.pk]
        differs = []
        if member.pk != leader.pk:
            differs = settings_that_differ(
                member,
                leader,
                tiers=tiers,
                shadow_config=member_glance.config,
                followed_config=glances[leader.pk].config,
            ).sentences or ["no setting differs"]
        columns.append(
            ShadowColumn(
                pool=member,
                cells=glance_cells(member_glance),
                dashboard_url=reverse("admin:portfolio_pool_dashboard", args=[member.pk]),
                is_current=member.pk == pool.pk,
                decisions={k: counts[member.pk][k] for k in ("act", "defer", "skip")},
                top_skips=skips[member.pk].most_common(3),
                differs=differs,
                failures=failures.get(member.pk, 0),
            )
        )
    return columns


def overview_order(glances: list[PoolGlance]) -> list[PoolGlance]:
    """The overview's rows: the pools that follow none, those needing attention first, each
    with its shadows right under it (by name)."""
    order = {"alert": 0, "warn": 1, "ok": 2}
    leaders = sorted(
        (g for g in glances if g.pool.shadow_of_id is None),
        key=lambda g: (order[g.level], g.pool.name),
    )
    shadows: dict[int, list[PoolGlance]] = {}
    for g in sorted(glances, key=lambda g: g.pool.name):
        if g.pool.shadow_of_id is not None:
            shadows.setdefault(g.pool.shadow_of_id, []).append(g)
    rows = []
    for g in leaders:
        rows.append(g)
        rows += shadows.pop(g.pool.pk, [])
    return rows + [g for group in shadows.values() for g in group]


# --- what each gate saved or cost (decisions.gate_results) ----------------------------------


def gate_results_panel(
    pool: Pool,
    now: datetime,
    config: EngineConfig | None = None,
    tier_configs: list[RiskTierConfig] | None = None,
) -> dict[str, Any] | None:
    """The dashboard's "What each gate saved or cost" over the last 30 days, followed up to
    now: one row per skip reason (largest |result| first) and the total, each result signed
    and its sign's colour; None (and the error logged) when it cannot be computed. A fixed
    number of queries (``decisions.gate_results``; three with the configuration and the
    tiers given)."""
    try:
        start = now - timedelta(days=GATE_RESULTS_DAYS)
        results = gate_results(pool, start, now, now, config=config, tier_rows=tier_configs)
    except Exception:
        logger.exception("pool %s: gate results could not be computed", pool)
        return None

    def sign(value: Decimal) -> str:
        return "up" if value > 0 else "down" if value < 0 else ""

    return {
        "results": results,
        "rows": [
            {
                "reason": total.reason,
                "label": total.label,
                "kept_out": total.kept_out,
                "no_value": total.no_value,
                "result": signed_money(total.result),
                "sign": sign(total.result),
            }
            for total in results.reasons
        ],
        "total": signed_money(results.result),
        "total_sign": sign(results.result),
    }


@admin.register(Pool)
class PoolAdmin(admin.ModelAdmin):
    """Pools: name, mode and adapter are editable; money, tier and the halt are not. Halt,
    resume, the manual tier and clearing a breaker are actions of the pool's page."""

    change_form_template = "admin/portfolio/pool/change_form.html"
    action_form_template = "admin/portfolio/pool/action_form.html"
    overview_template = "admin/portfolio/pool/overview.html"
    dashboard_template = "admin/portfolio/pool/dashboard.html"

    list_display = (
        "name",
        "dashboard_link",
        "mode",
        "adapter",
        "risk_tier",
        "halted",
        "cash",
        "reserve_balance",
        "updated_at",
    )
    list_filter = ("mode", "adapter", "risk_tier", "halted")
    search_fields = ("name",)
    list_per_page = 50
    add_fieldsets = (
        (None, {"fields": ("name", "mode", "adapter", "cash", "risk_tier", "reason")}),
    )
    fieldsets = (
        ("Current state", {"fields": ("current_state",)}),
        (None, {"fields": ("name", "mode", "adapter", "shadow_of")}),
        (
            "Moved only by the engine and the operator actions",
            {"fields": ("cash", "reserve_balance", "risk_tier", "created_at", "updated_at")},
        ),
        ("Related", {"fields": ("related_links",)}),
    )
    # A pool's name, mode and broker are fixed for life (every audit row names the pool; going
    # live is a new production pool, not a switched paper one): nothing here is saved directly.
    change_readonly_fields = (
        "current_state",
        "name",
        "mode",
        "adapter",
        "shadow_of",
        "cash",
        "reserve_balance",
        "risk_tier",
        "created_at",
        "updated_at",
        "related_links",
    )

    def get_fieldsets(self, request: HttpRequest, obj: Pool | None = None) -> Any:
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Pool | None = None) -> Any:
        return () if obj is None else self.change_readonly_fields

    def get_form(self, request: HttpRequest, obj: Pool | None = None, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = PoolAddForm
        return super().get_form(request, obj, **kwargs)

    def save_model(self, request: HttpRequest, obj: Pool, form: Any, change: bool) -> None:
        """A new pool goes through ``actions.create_pool``, which also creates its engine and
        risk configuration, its first tier history row and its audit row. The form has already
        checked what ``create_pool`` checks (a free slug, the choices, cash ≥ 0)."""
        if change:
            return
        created = actions.create_pool(
            obj.name,
            mode=obj.mode,
            cash=obj.cash,
            tier=obj.risk_tier,
            adapter=obj.adapter,
            actor=request.user.get_username(),
            reason=form.cleaned_data["reason"],
            now=timezone.now(),
            via=VIA,
        )
        obj.pk = created.pk
        obj.created_at = created.created_at
        obj.updated_at = created.updated_at
        obj._state.adding = False
        obj._state.db = created._state.db

    def has_delete_permission(self, request: HttpRequest, obj: Pool | None = None) -> bool:
        # Deleting a pool would cascade into its snapshots, tier history and breaker events.
        return False

    @admin.display(description="state now")
    def current_state(self, obj: Pool) -> SafeString:
        """The pool as of now through the read model (``execution.selectors.pool_as_of``:
        a handful of queries, the pending orders included)."""
        try:
            state = pool_as_of(obj, timezone.now())
        except Exception:  # the page must open even when valuation cannot run
            logger.exception("admin: could not value pool %s", obj.pk)
            return format_html("<p>{}</p>", "The current state could not be computed (see logs)")
        return render_pool_state(state)

    @admin.display(description="audit trail")
    def related_links(self, obj: Pool) -> SafeString:
        links = [
            changelist_link(DecisionRecord, {"pool__id__exact": obj.pk}, "decisions"),
            changelist_link(Order, {"pool__id__exact": obj.pk}, "orders"),
            changelist_link(Commitment, {"pool__id__exact": obj.pk}, "commitments"),
            changelist_link(Fill, {"pool__id__exact": obj.pk}, "fills"),
            changelist_link(PoolSnapshot, {"pool__id__exact": obj.pk}, "snapshots"),
            changelist_link(ReserveLedgerEntry, {"pool__id__exact": obj.pk}, "reserve ledger"),
            changelist_link(RiskTierHistory, {"pool__id__exact": obj.pk}, "tier history"),
            changelist_link(CircuitBreakerEvent, {"pool__id__exact": obj.pk}, "breaker events"),
            changelist_link(OperatorAction, {"pool__id__exact": obj.pk}, "operator actions"),
            changelist_link(
                ReconciliationEvent,
                {"pool__id__exact": obj.pk, "status__exact": ReconciliationStatus.OPEN},
                "open reconciliation events",
            ),
        ]
        engine = EngineConfig.objects.filter(pool=obj).first()
        if engine is not None:
            links.append(admin_link(engine, "engine configuration"))
        limits = PoolRiskConfig.objects.filter(pool=obj).first()
        if limits is not None:
            links.append(admin_link(limits, "execution risk limits"))
        return format_html(" · ".join(["{}"] * len(links)), *links)

    # --- operator actions ---------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        """The operator actions (``<id>/halt/``, ``<id>/resume/``, ``<id>/set-tier/``,
        ``<id>/clear-breaker/``), ahead of the admin's ``<id>/`` catch-all."""
        opts = self.opts
        prefix = f"{opts.app_label}_{opts.model_name}"
        pool_actions = [
            path(
                f"<path:object_id>/{action.name.replace('_', '-')}/",
                self.admin_site.admin_view(self.pool_action_view),
                {"action_name": action.name},
                name=f"{prefix}_{action.name}",
            )
            for action in POOL_ACTIONS
        ]
        console = [
            path(
                "overview/",
                self.admin_site.admin_view(self.overview_view),
                name=f"{prefix}_overview",
            ),
            path(
                "<path:object_id>/dashboard/",
                self.admin_site.admin_view(self.dashboard_view),
                name=f"{prefix}_dashboard",
            ),
        ]
        return console + pool_actions + super().get_urls()

    # --- the operator console -----------------------------------------------------------------

    @admin.display(description="dashboard")
    def dashboard_link(self, obj: Pool) -> str:
        url = reverse("admin:portfolio_pool_dashboard", args=[obj.pk])
        return format_html('<a href="{}">dashboard</a>', url)

    def console_context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        request.current_app = self.admin_site.name
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "media": self.media,
            # The console needs the page's full width for its tables and charts.
            "is_nav_sidebar_enabled": False,
        }

    def overview_view(self, request: HttpRequest) -> HttpResponse:
        """Every pool at a glance (``pool_glances``), those that need attention first. Needs
        the view permission on pools."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        now = timezone.now()
        glances = overview_order(pool_glances(list(Pool.objects.order_by("name")), now))
        names = {glance.pool.pk: glance.pool.name for glance in glances}
        context = {
            **self.console_context(request, "Pools overview"),
            "rows": [
                glance_cells(glance) | {"shadow_of": names.get(glance.pool.shadow_of_id)}
                for glance in glances
            ],
            "now": now,
            "can_change": self.has_change_permission(request),
        }
        return TemplateResponse(request, self.overview_template, context)

    def dashboard_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """One pool's dashboard: its state and what needs attention, its charts over the
        snapshots, its open commitments with their levels, why nothing was bought, its last
        orders, breaker and tier events and operator actions, and its actions. A fixed number
        of queries, whatever the number of decisions and orders (``tests/test_console_pages.py``).
        """
        pool = self.get_object(request, unquote(object_id))
        if pool is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, pool):
            raise PermissionDenied
        now = timezone.now()
        (glance,) = pool_glances([pool], now, sessions=PRICE_SESSIONS)
        snapshots = list(
            PoolSnapshot.objects.filter(pool=pool).order_by("-session", "-id")[:CHART_SESSIONS]
        )[::-1]
        tier_configs = list(RiskTierConfig.objects.all())
        heat = {row.name: row.max_portfolio_heat for row in tier_configs}
        last_session = last_session_bounds(pool)
        context = {
            **self.console_context(request, f"Pool {pool.name}"),
            "original": pool,
            "glance": glance,
            "cells": glance_cells(glance),
            "state": glance.state,
            "state_panel": render_pool_state(glance.state) if glance.state else None,
            "now": now,
            "charts": pool_charts(snapshots, glance.config, heat),
            "snapshot_count": len(snapshots),
            "commitments": commitment_views(glance.state) if glance.state else [],
            "breakers": glance.state.breakers.events if glance.state else (),
            "last_session": last_session[0].date() if last_session else None,
            "skips_last_session": skip_counts(pool, *last_session) if last_session else [],
            "skips_30_days": skip_counts(pool, now - timedelta(days=30), None),
            "gate_results": gate_results_panel(pool, now, glance.config, tier_configs),
            "orders": list(
                Order.objects.filter(pool=pool)
                .select_related("entity")
                .order_by("-created_at", "-id")[:RECENT_ROWS]
            ),
            "breaker_events": list(
                CircuitBreakerEvent.objects.filter(pool=pool)
                .select_related("entity")
                .order_by("-triggered_at", "-id")[:RECENT_ROWS]
            ),
            "tier_events": list(
                RiskTierHistory.objects.filter(pool=pool).order_by("-changed_at", "-id")[
                    :RECENT_ROWS
                ]
            ),
            "operator_actions": list(
                OperatorAction.objects.filter(pool=pool).order_by("-created_at", "-id")[
                    :RECENT_ROWS
                ]
            ),
            "ledger": list(
                ReserveLedgerEntry.objects.filter(pool=pool).order_by("-created_at", "-id")[:5]
            ),
            "can_change": self.has_change_permission(request, pool),
            "links": self.related_links(pool),
            "shadow_columns": shadow_group(pool, glance, now, last_session),
        }
        return TemplateResponse(request, self.dashboard_template, context)

    def pool_action_view(
        self, request: HttpRequest, object_id: str, action_name: str
    ) -> HttpResponse:
        """The form page of one operator action: the pool's state and the form on GET; on a
        valid POST, one audited action, then back to the pool page with a success message, or
        the form again with the error (a refusal, or nothing changed).

        Requires the change permission on the pool (403 otherwise); CSRF is checked by
        ``admin_view``.
        """
        action = {action.name: action for action in POOL_ACTIONS}[action_name]
        pool = self.get_object(request, unquote(object_id))
        if pool is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, pool):
            raise PermissionDenied
        now = timezone.now()
        form_kwargs: dict[str, Any] = {}
        if action is CLEAR_BREAKER:
            form_kwargs["choices"] = breaker_choices(pool, now)
        back = request.POST.get("_return") or request.GET.get("return") or ""
        if request.method == "POST":
            form = action.form_class(request.POST, **form_kwargs)
            if form.is_valid() and "_preview" in request.POST:
                confirmation = self.describe_action(
                    action, pool, form, request.user.get_username(), form_kwargs
                )
                return self.render_action_form(
                    request, pool, action, form, form_kwargs, confirmation=confirmation
                )
            if form.is_valid() and "_edit" not in request.POST:
                apply = self.action_appliers()[action.name]
                try:
                    with transaction.atomic():
                        outcome = apply(pool, form, request.user.get_username(), now)
                        if outcome.changed:
                            self.log_change(request, pool, outcome.message)
                except ActionError as exc:
                    show_action_errors(form, exc)
                else:
                    if outcome.changed:
                        messages.success(request, outcome.message)
                        if back == "dashboard":
                            return HttpResponseRedirect(
                                reverse("admin:portfolio_pool_dashboard", args=[pool.pk])
                            )
                        return HttpResponseRedirect(change_url(pool))
                    form.add_error(None, outcome.message)
        else:
            form = action.form_class(
                initial=self.action_initial(action, pool, form_kwargs), **form_kwargs
            )
        return self.render_action_form(request, pool, action, form, form_kwargs)

    def describe_action(
        self,
        action: PoolAction,
        pool: Pool,
        form: forms.Form,
        actor: str,
        form_kwargs: dict[str, Any],
    ) -> list[tuple[str, str]]:
        """What a valid form will do, repeated on the confirmation page before anything
        changes: (label, text) pairs. No query beyond the pool the view already holds."""
        reason = form.cleaned_data["reason"]
        lines: list[tuple[str, str]] = [("Pool", pool.name)]
        if action is HALT:
            lines += [
                ("Halted", f"{'yes' if pool.halted else 'no'} → yes"),
                ("Halt reason on the pool", f"{reason} ({actor})"),
            ]
        elif action is RESUME:
            lines += [
                ("Halted", f"{'yes' if pool.halted else 'no'} → no"),
                ("Halt reason lifted", pool.halt_reason or EMPTY),
            ]
        elif action is SET_TIER:
            new = form.cleaned_data["tier"]
            lines.append(("Risk tier", f"{RiskTier(pool.risk_tier).label} → {RiskTier(new).label}"))
        elif action is CLEAR_BREAKER:
            chosen = dict(form_kwargs["choices"]).get(form.cleaned_data["breaker"])
            lines.append(
                ("Breaker ended now", chosen or f"{form.cleaned_data['breaker']} (not in force)")
            )
        lines += [
            ("What follows", action.intro),
            ("Recorded", f"an operator action by {actor}, through the admin, with the reason"),
            ("Reason", reason),
        ]
        return lines

    def action_initial(
        self, action: PoolAction, pool: Pool, form_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """The form's starting values: the current tier, or the only breaker in force."""
        if action is SET_TIER:
            return {"tier": pool.risk_tier}
        if action is CLEAR_BREAKER and len(form_kwargs["choices"]) == 1:
            return {"breaker": form_kwargs["choices"][0][0]}
        return {}

    def render_action_form(
        self,
        request: HttpRequest,
        pool: Pool,
        action: PoolAction,
        form: forms.Form,
        form_kwargs: dict[str, Any],
        *,
        confirmation: list[tuple[str, str]] | None = None,
    ) -> TemplateResponse:
        """The action's page: the pool's state panel (as on its change page) and the form,
        or, with ``confirmation``, what the action will do and the button that does it."""
        context = {
            "confirmation": confirmation,
            "return_to": request.POST.get("_return") or request.GET.get("return") or "",
            **self.admin_site.each_context(request),
            "title": f"{action.label}: {pool.name}",
            "opts": self.opts,
            "original": pool,
            "action": action,
            "form": form,
            "state_panel": self.current_state(pool),
            "nothing_in_force": action is CLEAR_BREAKER and not form_kwargs["choices"],
            "pool_url": change_url(pool),
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.action_form_template, context)

    def action_appliers(
        self,
    ) -> dict[str, Callable[[Pool, Any, str, datetime], ActionOutcome]]:
        """Each action's single audited call, by action name."""
        return {
            HALT.name: self.apply_halt,
            RESUME.name: self.apply_resume,
            SET_TIER.name: self.apply_set_tier,
            CLEAR_BREAKER.name: self.apply_clear_breaker,
        }

    def apply_halt(
        self, pool: Pool, form: HaltPoolForm, actor: str, now: datetime
    ) -> ActionOutcome:
        """``actions.halt_pool``."""
        reason = form.cleaned_data["reason"]
        result = actions.halt_pool(pool, actor=actor, reason=reason, now=now, via=VIA)
        if result.changed:
            return ActionOutcome(True, f"Pool {pool.name} is halted: {reason}")
        return ActionOutcome(False, f"Pool {pool.name} is already halted: nothing changed.")

    def apply_resume(
        self, pool: Pool, form: ResumePoolForm, actor: str, now: datetime
    ) -> ActionOutcome:
        """``actions.resume_pool``."""
        reason = form.cleaned_data["reason"]
        result = actions.resume_pool(pool, actor=actor, reason=reason, now=now, via=VIA)
        if result.changed:
            return ActionOutcome(True, f"Pool {pool.name} is running again: {reason}")
        return ActionOutcome(False, f"Pool {pool.name} is not halted: nothing changed.")

    def apply_set_tier(
        self, pool: Pool, form: SetRiskTierForm, actor: str, now: datetime
    ) -> ActionOutcome:
        """``actions.set_risk_tier`` (trigger ``manual``)."""
        tier = form.cleaned_data["tier"]
        label = RiskTier(tier).label
        result = actions.set_risk_tier(
            pool, tier, actor=actor, reason=form.cleaned_data["reason"], now=now, via=VIA
        )
        if result.changed:
            return ActionOutcome(True, f"Pool {pool.name} is now {label}.")
        return ActionOutcome(False, f"Pool {pool.name} is already {label}: nothing changed.")

    def apply_clear_breaker(
        self, pool: Pool, form: ClearBreakerForm, actor: str, now: datetime
    ) -> ActionOutcome:
        """``actions.clear_breaker`` of one type (one entity's cooldown when the choice names
        one)."""
        kind, entity = form.breaker_type, form.entity
        result = actions.clear_breaker(
            pool,
            kind,
            actor=actor,
            reason=form.cleaned_data["reason"],
            now=now,
            entity=entity,
            via=VIA,
        )
        target = kind + (f" on {entity}" if entity else "")
        if result.changed:
            cleared = len(result.before["in_force"])
            return ActionOutcome(
                True, f"Cleared {cleared} {target} breaker(s) of pool {pool.name}."
            )
        return ActionOutcome(
            False,
            f"Nothing to clear: no {target} breaker is in force for pool {pool.name} "
            "(it may have expired or been cleared meanwhile).",
        )


# --- entities and market data -----------------------------------------------------------------


@admin.register(Entity)
class EntityAdmin(admin.ModelAdmin):
    """Tradable instruments and their sectors."""

    list_display = ("symbol", "name", "sector", "created_at")
    list_filter = ("sector",)
    search_fields = ("symbol", "name")
    list_per_page = 50

    def get_readonly_fields(self, request: HttpRequest, obj: Entity | None = None) -> Any:
        # The symbol is the primary key every audit row points to.
        return ("symbol", "created_at") if obj is not None else ("created_at",)


@admin.register(PerformanceReport)
class PerformanceReportAdmin(admin.ModelAdmin):
    """Scheduled performance report (earnings) dates."""

    list_display = ("entity", "report_date", "created_at")
    date_hierarchy = "report_date"  # report_date_idx
    search_fields = ("entity__symbol",)
    autocomplete_fields = ("entity",)
    ordering = ("-report_date",)
    list_per_page = 50


@admin.register(MarketSnapshot)
class MarketSnapshotAdmin(LargeTableAdminMixin, ExactSearchMixin, ReadOnlyAuditAdmin):
    """Bars and data points, newest first (``snapshot_as_of_idx``)."""

    list_display = ("entity", "as_of", "open", "high", "low", "close", "volume")
    list_filter = ("as_of",)
    upper_search_fields = ("entity_id",)
    search_help_text = "Exact entity symbol"
    ordering = ("-as_of",)


# --- commitments and the pool audit tables ----------------------------------------------------


@admin.register(Commitment)
class CommitmentAdmin(ExactSearchMixin, ReadOnlyAuditAdmin):
    """Open and closed commitments (positions)."""

    list_display = (
        "pool",
        "entity",
        "status",
        "units",
        "entry_value",
        "risk_threshold",
        "gain_target",
        "realized_gain",
        "opened_at",
        "closed_at",
        "close_reason",
    )
    list_filter = ("status", "pool", "close_reason", "risk_tier")
    list_select_related = ("pool", "entity")
    upper_search_fields = ("entity_id",)
    search_help_text = "Exact entity symbol"
    ordering = ("-opened_at", "-id")
    fieldsets = (
        (
            "Commitment",
            {
                "fields": (
                    "pool",
                    "entity",
                    "status",
                    "units",
                    "entry_value",
                    "entry_cost",
                    "risk_tier",
                    "opened_at",
                    "orders_link",
                )
            },
        ),
        (
            "Risk levels",
            {
                "fields": (
                    "atr_at_entry",
                    "atr",
                    "risk_threshold",
                    "gain_target",
                    "highest_value",
                    "trailing_active",
                )
            },
        ),
        (
            "Close",
            {
                "fields": (
                    "closed_at",
                    "exit_value",
                    "realized_gain",
                    "close_reason",
                    "siphoned",
                    "updated_at",
                )
            },
        ),
    )
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"])

    @admin.display(description="orders")
    def orders_link(self, obj: Commitment) -> str:
        return changelist_link(Order, {"commitment__id__exact": obj.pk}, "orders")


@admin.register(PoolSnapshot)
class PoolSnapshotAdmin(ReadOnlyAuditAdmin):
    """Daily pool-wide performance metrics."""

    list_display = (
        "pool",
        "session",
        "total_value",
        "active_pool",
        "reserve_balance",
        "daily_gain",
        "success_rate",
        "peak_to_trough",
        "pool_exposure",
        "open_commitments",
        "risk_tier",
    )
    list_filter = ("pool", "risk_tier")
    list_select_related = ("pool",)
    ordering = ("-session", "-id")


@admin.register(ReserveLedgerEntry)
class ReserveLedgerEntryAdmin(ReadOnlyAuditAdmin):
    """Append-only movements of the reserve pool."""

    list_display = (
        "created_at",
        "pool",
        "trigger",
        "amount",
        "balance_after",
        "entity",
        "commitment_link",
        "note",
    )
    list_filter = ("pool", "trigger")
    list_select_related = ("pool", "entity", "commitment")
    ordering = ("-created_at", "-id")
    fields = (
        "created_at",
        "pool",
        "trigger",
        "amount",
        "balance_after",
        "entity",
        "commitment_link",
        "note",
    )
    readonly_fields = fields

    @admin.display(description="commitment")
    def commitment_link(self, obj: ReserveLedgerEntry) -> str:
        return admin_link(obj.commitment)


@admin.register(RiskTierHistory)
class RiskTierHistoryAdmin(ReadOnlyAuditAdmin):
    """Every change of a pool's risk tier, with the metrics or reason behind it."""

    list_display = ("changed_at", "pool", "previous_tier", "new_tier", "trigger", "actor", "reason")
    list_filter = ("pool", "trigger", "new_tier")
    list_select_related = ("pool",)
    ordering = ("-changed_at", "-id")
    fields = (
        "changed_at",
        "pool",
        "previous_tier",
        "new_tier",
        "trigger",
        "actor",
        "reason",
        "metrics_json",
    )
    readonly_fields = fields

    @admin.display(description="metrics")
    def metrics_json(self, obj: RiskTierHistory) -> SafeString:
        return pretty_json(obj.metrics)


@admin.register(CircuitBreakerEvent)
class CircuitBreakerEventAdmin(ReadOnlyAuditAdmin):
    """Circuit breaker triggers and their clearing."""

    list_display = (
        "triggered_at",
        "pool",
        "trigger_type",
        "entity",
        "expires_at",
        "in_force",
        "cleared_at",
        "cleared_by",
    )
    list_filter = ("pool", "trigger_type")
    list_select_related = ("pool", "entity")
    ordering = ("-triggered_at", "-id")
    fields = (
        "pool",
        "trigger_type",
        "entity",
        "triggered_at",
        "expires_at",
        "in_force",
        "cleared_at",
        "cleared_by",
        "clear_reason",
        "figures_json",
    )
    readonly_fields = fields

    @admin.display(description="in force now", boolean=True)
    def in_force(self, obj: CircuitBreakerEvent) -> bool:
        now = timezone.now()
        return obj.cleared_at is None and obj.triggered_at <= now < obj.expires_at

    @admin.display(description="figures")
    def figures_json(self, obj: CircuitBreakerEvent) -> SafeString:
        return pretty_json(obj.figures)


@admin.register(OperatorAction)
class OperatorActionAdmin(ReadOnlyAuditAdmin):
    """Every operator action (``portfolio.actions``): who, when, what, before → after, why, and
    through which interface (admin, command, api). Append-only."""

    list_display = ("created_at", "pool", "action", "actor", "via", "reason")
    list_filter = ("action", "via")
    list_select_related = ("pool",)
    ordering = ("-created_at", "-id")
    fields = (
        "created_at",
        "pool",
        "action",
        "actor",
        "via",
        "reason",
        "before_json",
        "after_json",
    )
    readonly_fields = fields

    @admin.display(description="before")
    def before_json(self, obj: OperatorAction) -> SafeString:
        return pretty_json(obj.before)

    @admin.display(description="after")
    def after_json(self, obj: OperatorAction) -> SafeString:
        return pretty_json(obj.after)


@admin.register(LoopRun)
class LoopRunAdmin(ReadOnlyAuditAdmin):
    """The last run of each loop of each pool (wall-clock time): what /healthz reads."""

    list_display = ("pool", "loop", "last_started_at", "last_finished_at", "last_detail")
    list_filter = ("pool", "loop")
    list_select_related = ("pool",)
    ordering = ("pool__name", "loop")


@admin.register(TelemetryCounter)
class TelemetryCounterAdmin(ReadOnlyAuditAdmin):
    """The counters and histogram buckets /metrics reads: decisions by outcome and reason,
    cycle durations, recommendation-to-order latencies."""

    list_display = ("pool", "metric", "outcome", "reason", "le", "total", "sum_seconds")
    list_filter = ("pool", "metric")
    list_select_related = ("pool",)


@admin.register(Fill)
class FillAdmin(LargeTableAdminMixin, ExactSearchMixin, ReadOnlyAuditAdmin):
    """Fills booked into the pools' books, newest first."""

    list_display = (
        "booked_at",
        "pool",
        "entity",
        "side",
        "units",
        "value",
        "realized_gain",
        "reason",
        "order_link",
    )
    list_filter = ("pool", "side")
    list_select_related = ("pool", "entity", "order")
    upper_search_fields = ("entity_id",)
    search_help_text = "Exact entity symbol"
    ordering = ("-booked_at", "-id")
    fields = (
        "booked_at",
        "pool",
        "entity",
        "side",
        "units",
        "value",
        "order_filled_quantity",
        "realized_gain",
        "reason",
        "commitment_link",
        "order_link",
    )
    readonly_fields = fields

    @admin.display(description="order")
    def order_link(self, obj: Fill) -> str:
        return admin_link(obj.order)

    @admin.display(description="commitment")
    def commitment_link(self, obj: Fill) -> str:
        return admin_link(obj.commitment)


# --- configuration ----------------------------------------------------------------------------

#: The engine settings grouped by the source's sections.
ENGINE_CONFIG_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Decision loop",
        (
            "polling_interval_seconds",
            "recommendation_max_age_minutes",
            "max_recommendations_per_cycle",
            "max_active_commitments",
            "declining_commitments_share",
            "declining_loss_pct",
            "dedupe_ttl_hours",
            "market_data_fallback",
        ),
    ),
    (
        "Commitment sizing",
        (
            "absolute_commitment_cap",
            "correlation_reduce_threshold",
            "correlation_reject_threshold",
            "correlation_lookback_sessions",
            "diversification_bonus",
            "diversification_min_sectors",
            "report_reject_sessions",
            "report_reduce_sessions",
            "report_reduce_factor",
        ),
    ),
    (
        "Circuit breaker",
        (
            "daily_loss_pct",
            "single_position_loss_pct",
            "stop_loss_hits_threshold",
            "stop_loss_window_minutes",
            "volatility_pause_hours",
            "ticker_cooldown_hours",
        ),
    ),
    ("Reserve pool", ("siphon_pct", "high_water_pct", "emergency_drawdown_pct")),
    (
        "Risk thresholds",
        ("atr_period", "atr_change_pct", "trailing_activation_pct", "heat_tighten_pct"),
    ),
    (
        "Risk tier controller",
        (
            "tier_downgrade_success_rate",
            "tier_downgrade_drawdown",
            "tier_upgrade_success_rate",
            "tier_upgrade_reserve_pct",
            "tier_upgrade_max_drawdown",
            "success_rate_lookback_days",
            "min_closed_for_success_rate",
            "risk_free_rate",
        ),
    ),
    ("Paper broker", ("paper_slippage_bps",)),
)


class AuditedConfigForm(forms.ModelForm):
    """A configuration row's change form that saves through its audited action.

    Validating the form runs the action (``apply``) inside the admin's transaction, once the
    fields themselves are valid: the action checks the whole row with the rules the commands and
    the API share and saves it with its ``OperatorAction`` row, or refuses, and each of its
    problems is shown on its field. The model itself is never saved by the form or the admin.
    ``actor`` is set per request by ``AuditedConfigAdmin.get_form``.
    """

    config_fields: tuple[str, ...] = ()
    actor: str = ""

    reason = reason_field(
        help_text="Why the values change; recorded in the operator actions with your username."
    )

    def apply(
        self, assignments: Mapping[str, Any], *, actor: str, reason: str, now: datetime
    ) -> ActionResult:
        raise NotImplementedError

    def _post_clean(self) -> None:
        # Replaces the model validation of a ModelForm: the action validates the merged row
        # (field rules, cross-field rules, the model's checks) with more precise messages.
        self.result: ActionResult | None = None
        if self.errors:
            return
        assignments = {
            name: self.cleaned_data[name] for name in self.config_fields if name in self.fields
        }
        try:
            self.result = self.apply(
                assignments,
                actor=self.actor,
                reason=self.cleaned_data["reason"],
                now=timezone.now(),
            )
        except ActionError as exc:
            show_action_errors(self, exc)
            return
        self.instance.refresh_from_db()


class AuditedConfigAdmin(admin.ModelAdmin):
    """A configuration admin whose form saves through its audited action
    (``AuditedConfigForm``): rows are created with their pool (or by migration) and never
    deleted."""

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user.get_username()})

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Nothing to save: the form's validation ran the action (``AuditedConfigForm``)."""
        if form.result is not None and not form.result.changed:
            messages.info(request, "No value changed: nothing was recorded.")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Created with the pool (tiers by migration); a deleted row would leave the engine or
        # the worker without its values.
        return False


class EngineConfigForm(AuditedConfigForm):
    """Engine settings, saved by ``actions.change_engine_config`` (``validate_engine_config``:
    fractions in (0, 1], lower below upper thresholds, positive periods)."""

    config_fields = ENGINE_CONFIG_FIELDS

    class Meta:
        model = EngineConfig
        fields = (*ENGINE_CONFIG_FIELDS, "reason")

    def apply(
        self, assignments: Mapping[str, Any], *, actor: str, reason: str, now: datetime
    ) -> ActionResult:
        return actions.change_engine_config(
            self.instance.pool, assignments, actor=actor, reason=reason, now=now, via=VIA
        )


@admin.register(EngineConfig)
class EngineConfigAdmin(AuditedConfigAdmin):
    """Per-pool engine settings, read by the engine at the start of each cycle."""

    form = EngineConfigForm
    list_display = (
        "pool",
        "max_active_commitments",
        "absolute_commitment_cap",
        "daily_loss_pct",
        "siphon_pct",
        "updated_at",
    )
    list_select_related = ("pool",)
    list_per_page = 50
    readonly_fields = ("pool", "updated_at")
    fieldsets = (
        (None, {"fields": ("pool", "updated_at")}),
        *((title, {"fields": fields}) for title, fields in ENGINE_CONFIG_SECTIONS),
        ("Why", {"fields": ("reason",)}),
    )


class PoolRiskConfigForm(AuditedConfigForm):
    """The execution gate's limits, saved by ``actions.change_pool_risk_limits``
    (``validate_pool_risk_limits``: fractions in (0, 1], a positive notional, at least one
    commitment and one order per minute)."""

    config_fields = POOL_RISK_FIELDS

    class Meta:
        model = PoolRiskConfig
        fields = (*POOL_RISK_FIELDS, "reason")

    def apply(
        self, assignments: Mapping[str, Any], *, actor: str, reason: str, now: datetime
    ) -> ActionResult:
        return actions.change_pool_risk_limits(
            self.instance.pool, assignments, actor=actor, reason=reason, now=now, via=VIA
        )


@admin.register(PoolRiskConfig)
class PoolRiskConfigAdmin(AuditedConfigAdmin):
    """The execution gate's own limits per pool, a second line behind the engine."""

    form = PoolRiskConfigForm
    list_display = ("pool", *POOL_RISK_FIELDS, "updated_at")
    list_select_related = ("pool",)
    list_per_page = 50
    readonly_fields = ("pool", "updated_at")
    fields = ("pool", *POOL_RISK_FIELDS, "updated_at", "reason")


class RiskTierConfigForm(AuditedConfigForm):
    """A risk tier, saved by ``actions.change_tier_params`` (``validate_tier_params``:
    fractions of the active pool, or a confidence, in (0, 1]; multipliers above 0)."""

    config_fields = TIER_FIELDS

    class Meta:
        model = RiskTierConfig
        fields = (*TIER_FIELDS, "reason")

    def apply(
        self, assignments: Mapping[str, Any], *, actor: str, reason: str, now: datetime
    ) -> ActionResult:
        return actions.change_tier_params(
            self.instance.name, assignments, actor=actor, reason=reason, now=now, via=VIA
        )


@admin.register(RiskTierConfig)
class RiskTierConfigAdmin(AuditedConfigAdmin):
    """The three risk tiers of the source's table; their values are editable, the set is not
    (migration 0002 creates them; the controller steps through them by level). A change applies
    to every pool in the tier."""

    form = RiskTierConfigForm
    list_display = ("name", "level", *TIER_FIELDS, "updated_at")
    readonly_fields = ("name", "level", "updated_at")
    fields = ("name", "level", *TIER_FIELDS, "updated_at", "reason")
    ordering = ("level",)
    list_per_page = 50


# --- position reconciliation ------------------------------------------------------------------


class AcknowledgeReconciliationForm(forms.Form):
    """Acknowledge a reconciliation event: a reason is required."""

    reason = reason_field(
        help_text="What the difference was and what was done about it; recorded with your "
        "username. The entity's reduce-only hold ends; the books are not changed."
    )


@admin.register(ReconciliationEvent)
class ReconciliationEventAdmin(ExactSearchMixin, ReadOnlyAuditAdmin):
    """Differences between the books and the broker found by position reconciliation
    (``execution.reconciliation``). Read-only: the only change is the **Acknowledge** button of
    an open event (``<id>/acknowledge/``), which asks for a reason and calls
    ``actions.acknowledge_reconciliation``; it needs the change permission on pools, as the
    pool actions do. An open event whose difference is gone stays open: the page says so."""

    change_form_template = "admin/portfolio/reconciliationevent/change_form.html"
    acknowledge_template = "admin/portfolio/reconciliationevent/acknowledge.html"

    list_display = (
        "first_seen_at",
        "pool",
        "subject",
        "symbol",
        "books_value",
        "broker_value",
        "difference",
        "status",
        "seen_count",
        "last_seen_at",
        "agreement",
    )
    list_filter = ("status", "subject", "pool")
    list_select_related = ("pool",)
    upper_search_fields = ("symbol",)
    search_help_text = "Exact entity symbol"
    ordering = ("-first_seen_at", "-id")
    fields = (
        "pool",
        "subject",
        "symbol",
        "books_value",
        "broker_value",
        "difference",
        "status",
        "agreement",
        "first_seen_at",
        "last_seen_at",
        "seen_count",
        "agreed_at",
        "acknowledged_at",
        "acknowledged_by",
        "acknowledge_reason",
    )
    readonly_fields = fields

    @admin.display(description="broker − books")
    def difference(self, obj: ReconciliationEvent) -> Decimal:
        return obj.difference

    @admin.display(description="now")
    def agreement(self, obj: ReconciliationEvent) -> str:
        """Whether the difference is still there, in words (an open event stays open until
        acknowledged, even once books and broker agree again)."""
        if not obj.is_open:
            return f"acknowledged by {obj.acknowledged_by}"
        if obj.agreed_at is not None:
            return (
                f"difference gone since {format_eastern(obj.agreed_at)}: still held until "
                "an operator acknowledges"
            )
        held = f"{obj.symbol} held reduce-only" if obj.symbol else "no entity held"
        return f"still differing at the last run: {held}"

    def can_acknowledge(self, request: HttpRequest) -> bool:
        return request.user.has_perm("portfolio.change_pool")

    def get_urls(self) -> list[URLPattern]:
        opts = self.opts
        return [
            path(
                "<path:object_id>/acknowledge/",
                self.admin_site.admin_view(self.acknowledge_view),
                name=f"{opts.app_label}_{opts.model_name}_acknowledge",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra = {"can_acknowledge": self.can_acknowledge(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)

    def acknowledge_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The acknowledgement form of one event: on a valid POST, one audited action, then
        back to the event with a success message, or the form again with the refusal (already
        acknowledged). Requires the change permission on pools (403 otherwise)."""
        event = self.get_object(request, unquote(object_id))
        if event is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.can_acknowledge(request):
            raise PermissionDenied
        if request.method == "POST":
            form = AcknowledgeReconciliationForm(request.POST)
            if form.is_valid():
                try:
                    result = actions.acknowledge_reconciliation(
                        event,
                        actor=request.user.get_username(),
                        reason=form.cleaned_data["reason"],
                        now=timezone.now(),
                        via=VIA,
                    )
                except ActionError as exc:
                    show_action_errors(form, exc)
                else:
                    messages.success(request, f"Acknowledged: {result.detail}.")
                    return HttpResponseRedirect(change_url(event))
        else:
            form = AcknowledgeReconciliationForm()
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "title": f"Acknowledge: {event}",
            "opts": self.opts,
            "original": event,
            "form": form,
            "agreement": self.agreement(event),
            "event_url": change_url(event),
            "media": self.media + form.media,
        }
        return TemplateResponse(request, self.acknowledge_template, context)
