"""Admin of the decision audit trail: recommendations and decision records, read-only.

A decision's change page answers "why" without reading code: the chain from the recommendation
to the commitment as one strip of links, the checks in the order they ran, the sizing waterfall
as a table and a bar chart (``project/charts.py``), the pool as the engine saw it, and the raw
trace.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib import admin
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from decisions.models import DecisionRecord, Recommendation
from execution.models import Order, RiskEvaluation
from portfolio.models import Fill
from project import charts
from project.admin_config_versions import version_link
from project.admin_tools import (
    EMPTY,
    ExactSearchMixin,
    LargeTableAdminMixin,
    ReadOnlyAuditAdmin,
    admin_link,
    change_url,
    changelist_link,
    format_eastern,
    html_table,
    key_value_table,
    plain,
    pretty_json,
    render_checks,
)

WATERFALL_HEADERS = ("#", "step", "before", "after", "note", "figures")
#: Keys of a waterfall step that have their own column; the others go to "figures".
WATERFALL_COLUMNS = {"step", "before", "after", "note"}

POOL_SUMMARY_LABELS = {
    "risk_tier": "Risk tier",
    "total_value": "Total pool value",
    "reserve_balance": "Reserve balance",
    "active_pool": "Active pool",
    "deducted_this_cycle": "Deducted earlier this cycle",
    "spendable_cash": "Spendable cash",
    "active_commitments": "Active commitments",
    "declining_commitments": "Declining commitments",
    "pool_exposure": "Pool exposure",
    "sectors_held": "Sectors held",
}


def render_waterfall(sizing: Any) -> SafeString:
    """The sizer's result and its waterfall (step, before, after, note) as HTML."""
    if not isinstance(sizing, dict):
        return format_html("<p>{}</p>", "The sizer did not run for this decision")
    summary = key_value_table(
        [
            ("Rejected", sizing.get("rejected")),
            ("Reason", sizing.get("reason")),
            ("Dollar amount", sizing.get("dollar_amount")),
            ("Units", sizing.get("units")),
            ("Allocation (fraction of the active pool)", sizing.get("allocation_pct")),
        ]
    )
    rows = []
    for position, step in enumerate(sizing.get("waterfall") or [], start=1):
        if not isinstance(step, dict):
            rows.append((position, plain(step), EMPTY, EMPTY, EMPTY, EMPTY))
            continue
        figures = "; ".join(
            f"{key} = {plain(value)}" for key, value in step.items() if key not in WATERFALL_COLUMNS
        )
        rows.append(
            (
                position,
                plain(step.get("step")),
                plain(step.get("before")),
                plain(step.get("after")),
                plain(step.get("note")),
                figures or EMPTY,
            )
        )
    table = html_table(WATERFALL_HEADERS, rows, empty="No sizing steps recorded")
    chart = render_waterfall_chart(sizing.get("waterfall") or [])
    return format_html(
        '{}<div class="waterfall"><div class="waterfall-chart">{}</div>'
        '<div class="waterfall-table">{}</div></div>',
        summary,
        chart,
        table,
    )


def _amount(value: Any) -> float | None:
    """A trace amount (a string of a Decimal) as a float, None when it is not a number."""
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None


def waterfall_bars(steps: list[Any]) -> list[charts.Bar]:
    """The sizing waterfall as bars, the amount after each step: a step that cut the amount is
    ``cut``, one that left nothing ``zero``, the last one ``final``."""
    valid = [s for s in steps if isinstance(s, dict) and _amount(s.get("after")) is not None]
    bars: list[charts.Bar] = []
    for position, step in enumerate(valid, start=1):
        after = _amount(step["after"])
        before = _amount(step.get("before"))
        style = "main"
        if after <= 0:
            style = "zero"
        elif position == len(valid):
            style = "final"
        elif before is not None and after < before:
            style = "cut"
        label = str(step.get("step") or position)
        bars.append(charts.Bar(label, after, style, plain(step.get("note"))))
    return bars


def render_waterfall_chart(steps: list[Any]) -> SafeString:
    """The sizing waterfall drawn as a bar chart (server-rendered SVG)."""
    bars = waterfall_bars(steps)
    if not bars:
        return mark_safe("")
    return mark_safe(
        charts.bar_chart("waterfall", "Dollar amount after each step", bars, width=380)
    )


def render_pool_summary(pool: Any) -> SafeString:
    """The pool as the engine saw it when it evaluated the recommendation."""
    if not isinstance(pool, dict):
        return format_html("<p>{}</p>", "No pool summary recorded")
    known = [(label, pool[key]) for key, label in POOL_SUMMARY_LABELS.items() if key in pool]
    others = [(key, value) for key, value in pool.items() if key not in POOL_SUMMARY_LABELS]
    return key_value_table(known + others)


@admin.register(Recommendation)
class RecommendationAdmin(LargeTableAdminMixin, ExactSearchMixin, ReadOnlyAuditAdmin):
    """Recommendations as received from the upstream engine."""

    list_display = (
        "id",
        "entity",
        "action",
        "mode",
        "confidence",
        "generated_at",
        "decisions_link",
    )
    list_filter = ("action", "mode", "generated_at")
    exact_search_fields = ("id",)
    upper_search_fields = ("entity_id",)
    search_help_text = "Exact recommendation id or entity symbol"
    # Served by recommendation_candidate_idx (generated_at leads it).
    ordering = ("-generated_at",)
    fields = (
        "id",
        "entity",
        "action",
        "mode",
        "confidence",
        "generated_at",
        "received_at",
        "risk_classification",
        "thesis",
        "decisions_link",
        "orders_link",
    )
    readonly_fields = fields

    @admin.display(description="decisions")
    def decisions_link(self, obj: Recommendation) -> str:
        return changelist_link(DecisionRecord, {"recommendation__id__exact": obj.pk}, "decisions")

    @admin.display(description="orders")
    def orders_link(self, obj: Recommendation) -> str:
        return changelist_link(Order, {"recommendation__id__exact": obj.pk}, "orders")


@admin.register(DecisionRecord)
class DecisionRecordAdmin(LargeTableAdminMixin, ExactSearchMixin, ReadOnlyAuditAdmin):
    """Every evaluation of a recommendation for a pool, and why it ended as it did."""

    list_display = (
        "evaluated_at_eastern",
        "pool",
        "entity",
        "action",
        "outcome",
        "skip_reason",
        "confidence",
        "commitment_value",
        "units",
        "risk_tier",
        "evaluations",
    )
    list_display_links = ("evaluated_at_eastern",)
    # There is no index on evaluated_at alone, so date_hierarchy (whose year/month lists are
    # SELECT DISTINCT over the whole table) is left out; the date filter's ranges are plain
    # predicates and need no query to draw.
    list_filter = ("pool", "outcome", "skip_reason", "risk_tier", "action", "evaluated_at")
    list_select_related = ("pool", "entity")
    exact_search_fields = ("recommendation_id",)
    upper_search_fields = ("entity_id",)
    search_help_text = "Exact entity symbol or recommendation id"
    # The primary key follows insertion order and is the one index that serves an
    # unfiltered, newest-first page; the column headers still sort by time.
    ordering = ("-id",)
    fieldsets = (
        ("From recommendation to commitment", {"fields": ("chain",)}),
        (
            "Decision",
            {
                "fields": (
                    "evaluated_at_eastern",
                    "last_evaluated_at_eastern",
                    "evaluations",
                    "pool",
                    "recommendation_link",
                    "entity",
                    "action",
                    "outcome",
                    "skip_reason",
                    "processed",
                    "confidence",
                    "orders_links",
                    "commitment_links",
                    "config_version_link",
                )
            },
        ),
        (
            "Size",
            {
                "fields": (
                    "commitment_value",
                    "units",
                    "allocation_pct",
                    "current_value",
                )
            },
        ),
        ("Checks, in the order they ran", {"fields": ("checks_table",)}),
        ("Sizing waterfall", {"fields": ("waterfall_table",)}),
        (
            "Pool when evaluated",
            {
                "fields": (
                    "pool_summary",
                    "risk_tier",
                    "active_pool",
                    "reserve_balance",
                    "pool_exposure",
                    "circuit_breaker_active",
                    "correlation",
                    "correlation_check",
                    "sector_exposure",
                    "sector_check",
                    "report_sessions_away",
                    "report_proximity",
                )
            },
        ),
        ("Raw trace", {"classes": ("collapse",), "fields": ("trace_json",)}),
    )
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"])

    class Media:
        css = {"all": ("portfolio/console.css",)}

    @admin.display(description="chain")
    def chain(self, obj: DecisionRecord) -> SafeString:
        """recommendation → decision → order → risk evaluation → fill → commitment, as one
        strip of links; a step not reached is shown greyed. Three queries (orders with their
        commitments, risk evaluations, fills), whatever the number of each."""
        orders = list(obj.orders.select_related("commitment").order_by("id"))
        order_ids = [order.pk for order in orders]
        evaluations = list(
            RiskEvaluation.objects.filter(order_id__in=order_ids).order_by("id")
            if order_ids
            else []
        )
        fills = list(
            Fill.objects.filter(order_id__in=order_ids).order_by("id") if order_ids else []
        )
        commitments = {o.commitment_id: o.commitment for o in orders if o.commitment_id}
        steps = [
            ("recommendation", [(change_url(obj.recommendation), obj.recommendation_id)]),
            (
                "decision",
                [
                    (
                        change_url(obj),
                        f"{obj.outcome}{f' ({obj.skip_reason})' if obj.skip_reason else ''}",
                    )
                ],
            ),
            ("order", [(change_url(o), f"#{o.pk} {o.side} {o.status}") for o in orders]),
            (
                "risk evaluation",
                [
                    (change_url(e), f"#{e.order_id} {'passed' if e.passed else 'refused'}")
                    for e in evaluations
                ],
            ),
            ("fill", [(change_url(f), f"{f.side} {f.units} @ {f.value}") for f in fills]),
            (
                "commitment",
                [
                    (change_url(c), f"{c.entity_id} {c.status}")
                    for _, c in sorted(commitments.items())
                ],
            ),
        ]
        items = []
        for kind, links in steps:
            if links:
                body = format_html_join(
                    " ",
                    '<a class="chain-step" href="{}">{}</a>',
                    ((u, label) for u, label in links),
                )
                items.append(
                    format_html(
                        '<li data-step="{}"><span class="chain-kind">{}</span>{}</li>',
                        kind,
                        kind,
                        body,
                    )
                )
            else:
                items.append(
                    format_html(
                        '<li data-step="{}"><span class="chain-step missing">'
                        '<span class="chain-kind">{}</span>none</span></li>',
                        kind,
                        kind,
                    )
                )
        return format_html(
            '<ol class="decision-chain">{}</ol>', format_html_join("", "{}", ((i,) for i in items))
        )

    @admin.display(description="evaluated at (New York)", ordering="evaluated_at")
    def evaluated_at_eastern(self, obj: DecisionRecord) -> str:
        return format_eastern(obj.evaluated_at)

    @admin.display(description="last evaluated at (New York)")
    def last_evaluated_at_eastern(self, obj: DecisionRecord) -> str:
        return format_eastern(obj.last_evaluated_at)

    @admin.display(description="recommendation")
    def recommendation_link(self, obj: DecisionRecord) -> str:
        return admin_link(obj.recommendation)

    @admin.display(description="orders")
    def orders_links(self, obj: DecisionRecord) -> str:
        """Links to the decision's orders (one query)."""
        orders = list(obj.orders.order_by("id"))
        if not orders:
            return EMPTY
        return format_html_join(", ", "{}", ((admin_link(order),) for order in orders))

    @admin.display(description="commitment")
    def commitment_links(self, obj: DecisionRecord) -> str:
        """Links to the commitment(s) the decision's orders opened, added to or closed (one
        query)."""
        orders = obj.orders.filter(commitment__isnull=False).select_related("commitment")
        commitments = {order.commitment_id: order.commitment for order in orders}
        if not commitments:
            return EMPTY
        return format_html_join(
            ", ", "{}", ((admin_link(c),) for _, c in sorted(commitments.items()))
        )

    @admin.display(description="configuration version")
    def config_version_link(self, obj: DecisionRecord) -> str:
        """The version of the settings the decision was made with (no query: the key is the
        digest)."""
        return version_link(obj.config_version_id)

    @admin.display(description="checks")
    def checks_table(self, obj: DecisionRecord) -> SafeString:
        return render_checks(_trace(obj).get("checks"))

    @admin.display(description="sizing")
    def waterfall_table(self, obj: DecisionRecord) -> SafeString:
        trace = _trace(obj)
        if "exit_units" in trace and "sizing" not in trace:
            return format_html("<p>Exit of all {} units: no sizing</p>", trace["exit_units"])
        return render_waterfall(trace.get("sizing"))

    @admin.display(description="pool summary")
    def pool_summary(self, obj: DecisionRecord) -> SafeString:
        return render_pool_summary(_trace(obj).get("pool"))

    @admin.display(description="decision trace (JSON)")
    def trace_json(self, obj: DecisionRecord) -> SafeString:
        return pretty_json(obj.decision_trace)


def _trace(obj: DecisionRecord) -> dict:
    """The decision trace as a dict, whatever was stored."""
    trace = obj.decision_trace
    return trace if isinstance(trace, dict) else {}
