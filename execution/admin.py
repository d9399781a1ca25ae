"""Admin of the execution side: orders, their risk evaluations and their events, and the
watermarks of the event export (read-only audit). The per-pool execution limits
(``PoolRiskConfig``) are pool configuration, in ``portfolio.admin``."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString

from execution.models import ExportCursor, Order, OrderEvent, RiskEvaluation
from portfolio.models import AdapterKind
from project.admin_tools import (
    ExactSearchMixin,
    LargeTableAdminMixin,
    ReadOnlyAuditAdmin,
    ReadOnlyTabularInline,
    admin_link,
    format_eastern,
    plain,
    pretty_json,
    render_checks,
)


class BrokerFilter(admin.SimpleListFilter):
    """Filter on the broker from the known adapters: the default filter of a free-text field
    would run ``SELECT DISTINCT broker`` over the whole orders table to draw itself."""

    title = "broker"
    parameter_name = "broker"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return list(AdapterKind.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(broker=value) if value else queryset


class RiskEvaluationInline(ReadOnlyTabularInline):
    """The order's risk evaluations, each with its checks as a small table."""

    model = RiskEvaluation
    fields = ("evaluated_at", "passed", "reasons_text", "checks_table")
    readonly_fields = fields
    ordering = ("id",)

    @admin.display(description="reasons")
    def reasons_text(self, obj: RiskEvaluation) -> str:
        return plain(obj.reasons)

    @admin.display(description="checks")
    def checks_table(self, obj: RiskEvaluation) -> SafeString:
        return render_checks(obj.checks)


class OrderEventInline(ReadOnlyTabularInline):
    """The order's events, oldest first (``execution.events``)."""

    model = OrderEvent
    fields = (
        "id",
        "occurred_at",
        "kind",
        "from_status",
        "to_status",
        "filled_quantity",
        "fill_quantity",
        "fill_value",
        "broker_order_id",
        "detail",
        "recorded_at",
    )
    readonly_fields = fields
    ordering = ("id",)
    show_change_link = False


@admin.register(Order)
class OrderAdmin(LargeTableAdminMixin, ExactSearchMixin, ReadOnlyAuditAdmin):
    """Execution requests, from the decision that created them to the broker's answer."""

    list_display = (
        "created_at",
        "pool",
        "entity",
        "side",
        "quantity",
        "status",
        "reason",
        "fill_value",
        "filled_at",
        "broker",
    )
    list_filter = ("status", "side", "reason", "pool", BrokerFilter, "created_at")
    list_select_related = ("pool", "entity")
    exact_search_fields = ("idempotency_key", "broker_order_id")
    upper_search_fields = ("entity_id",)
    search_help_text = "Exact entity symbol, idempotency key or broker order id"
    ordering = ("-id",)
    inlines = (RiskEvaluationInline, OrderEventInline)
    fieldsets = (
        (
            "Order",
            {
                "fields": (
                    "created_at_eastern",
                    "pool",
                    "entity",
                    "action",
                    "side",
                    "reason",
                    "quantity",
                    "estimated_value",
                    "notional",
                    "status",
                    "status_reason",
                    "attempts",
                )
            },
        ),
        (
            "Audit trail",
            {"fields": ("decision_link", "recommendation_link", "commitment_link")},
        ),
        (
            "Broker",
            {
                "fields": (
                    "broker",
                    "idempotency_key",
                    "broker_order_id",
                    "submitted_at",
                    "filled_quantity",
                    "fill_value",
                    "filled_at",
                    "realized_gain",
                    "updated_at",
                )
            },
        ),
        ("Request sent", {"fields": ("request_json",)}),
        ("Response received", {"fields": ("response_json",)}),
    )
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"])

    @admin.display(description="created at (New York)", ordering="created_at")
    def created_at_eastern(self, obj: Order) -> str:
        return format_eastern(obj.created_at)

    @admin.display(description="notional (quantity × estimated value)")
    def notional(self, obj: Order) -> Decimal:
        return obj.notional

    @admin.display(description="decision")
    def decision_link(self, obj: Order) -> str:
        return admin_link(obj.decision)

    @admin.display(description="recommendation")
    def recommendation_link(self, obj: Order) -> str:
        return admin_link(obj.recommendation)

    @admin.display(description="commitment")
    def commitment_link(self, obj: Order) -> str:
        return admin_link(obj.commitment)

    @admin.display(description="request payload")
    def request_json(self, obj: Order) -> SafeString:
        return pretty_json(obj.request_payload)

    @admin.display(description="response payload")
    def response_json(self, obj: Order) -> SafeString:
        return pretty_json(obj.response_payload)


@admin.register(RiskEvaluation)
class RiskEvaluationAdmin(LargeTableAdminMixin, ReadOnlyAuditAdmin):
    """The execution service's risk evaluation of each order, stored whatever its outcome."""

    list_display = ("evaluated_at", "order_link", "pool", "passed", "reasons_text")
    list_filter = ("passed", "pool", "evaluated_at")
    list_select_related = ("pool", "order")
    ordering = ("-id",)
    fields = ("evaluated_at", "order_link", "pool", "passed", "reasons_text", "checks_table")
    readonly_fields = fields

    @admin.display(description="order")
    def order_link(self, obj: RiskEvaluation) -> str:
        return admin_link(obj.order)

    @admin.display(description="reasons")
    def reasons_text(self, obj: RiskEvaluation) -> str:
        return plain(obj.reasons)

    @admin.display(description="checks")
    def checks_table(self, obj: RiskEvaluation) -> SafeString:
        return render_checks(obj.checks)


class OrderIdSearchMixin:
    """Search by order id: each whole-number term is an exact lookup on the indexed
    ``order_id`` (other terms match nothing)."""

    search_fields = ("order_id",)
    search_help_text = "Exact order id"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        terms = search_term.split()
        if not terms:
            return queryset, False
        ids = [int(term) for term in terms if term.isdigit()]
        return queryset.filter(order_id__in=ids), False


@admin.register(OrderEvent)
class OrderEventAdmin(OrderIdSearchMixin, LargeTableAdminMixin, ReadOnlyAuditAdmin):
    """Every change of every order, in the order the export writes them (append-only)."""

    list_display = (
        "id",
        "occurred_at",
        "order_link",
        "pool",
        "kind",
        "from_status",
        "to_status",
        "entity",
        "side",
        "quantity",
        "filled_quantity",
        "fill_quantity",
    )
    list_filter = ("kind", "pool")
    list_select_related = ("pool", "order")
    ordering = ("-id",)
    fields = (
        "id",
        "order_link",
        "pool",
        "kind",
        "from_status",
        "to_status",
        "entity",
        "side",
        "reason",
        "quantity",
        "filled_quantity",
        "fill_quantity",
        "fill_value",
        "broker_order_id",
        "client_order_id",
        "detail",
        "occurred_at",
        "recorded_at",
        "payload_json",
    )
    readonly_fields = fields

    @admin.display(description="order", ordering="order_id")
    def order_link(self, obj: OrderEvent) -> str:
        return admin_link(obj.order, f"order {obj.order_id}")

    @admin.display(description="payload")
    def payload_json(self, obj: OrderEvent) -> SafeString:
        return pretty_json(obj.payload)


@admin.register(ExportCursor)
class ExportCursorAdmin(ReadOnlyAuditAdmin):
    """Where each event export stands: every event up to ``last_event_id`` is in the
    destination; a pending batch is one a run began and the next run finishes."""

    list_display = (
        "destination",
        "format",
        "last_event_id",
        "pending_through_id",
        "exported_events",
        "updated_at",
    )
    list_filter = ("format",)
    ordering = ("destination", "format")
    fields = list_display
    readonly_fields = fields
