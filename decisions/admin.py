"""Admin of the decision audit trail: recommendations and decision records, read-only.

A decision's change page answers "why" without reading code: the checks in the order they ran,
the sizing waterfall, the pool as the engine saw it, and the raw trace.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from decisions.models import DecisionRecord, Recommendation
from execution.models import Order
from project.admin_tools import (
    EMPTY,
    ExactSearchMixin,
    LargeTableAdminMixin,
    ReadOnlyAuditAdmin,
    admin_link,
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
    return format_html("{}{}", summary, table)


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
