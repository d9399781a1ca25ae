"""API: the audit trail and the pools, read-only (see docs/api.md).

Every list is cursor-paginated newest first on its table's time index (``project.api.pagination``:
no ``COUNT(*)``), filtered with django-filter, and answered in a fixed number of queries
whatever the page size: the pool and the nested rows come with ``select_related`` /
``prefetch_related``. The pool endpoints render the read model
(``execution.selectors.pool_as_of``) as of the request's time.

The viewer and operator roles read; any other method than GET (HEAD, OPTIONS) answers 405
for them, and a user without either role gets 403 (anonymous: 401).
"""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Prefetch, Q
from django.urls import path, register_converter
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.generics import get_object_or_404
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response

from decisions.models import DecisionOutcome, DecisionRecord, Recommendation, SkipReason
from execution.models import Order, OrderReason, OrderSide, OrderStatus, RiskEvaluation
from execution.selectors import pool_as_of
from portfolio.models import (
    BreakerType,
    CircuitBreakerEvent,
    Commitment,
    CommitmentStatus,
    Fill,
    FillSide,
    LedgerTrigger,
    OperatorAction,
    OperatorActionKind,
    Pool,
    PoolSnapshot,
    ReserveLedgerEntry,
    RiskTier,
    RiskTierHistory,
    TierTrigger,
)
from portfolio.selectors import get_engine_config
from project.api import serializers_audit as s
from project.api.filters import time_range
from project.api.pagination import cursor_pagination
from project.api.permissions import ReadRole
from project.api.roles import can_operate, can_read_all

# --- shared pieces ----------------------------------------------------------------------------


class ReadAudit(ReadRole):
    """``ReadRole`` for views that define GET only. A viewer's write is refused as every
    viewer's write is (403); an operator, who may write elsewhere, is told the method does not
    exist here (405)."""

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return can_read_all(request.user)
        return can_operate(request.user)


class ErrorSerializer(serializers.Serializer):
    """The API's one error shape (``project.api.errors``)."""

    detail = serializers.CharField()
    errors = serializers.DictField(help_text="Field → its problems; empty when none applies")


LIST_ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="A filter value is invalid"),
    401: OpenApiResponse(ErrorSerializer, description="No or bad credentials"),
    403: OpenApiResponse(ErrorSerializer, description="Neither the viewer nor the operator role"),
    404: OpenApiResponse(ErrorSerializer, description="Invalid cursor"),
}
DETAIL_ERRORS = {
    401: LIST_ERRORS[401],
    403: LIST_ERRORS[403],
    404: OpenApiResponse(ErrorSerializer, description="No such row"),
}
ID_PARAMETER = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)


class PathSegmentConverter:
    """One path segment, anything but ``/``: the view looks it up and answers a JSON 404 when
    nothing matches (or the value cannot be a key), never Django's HTML 404."""

    regex = "[^/]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value) -> str:
        return str(value)


class RecommendationIdConverter(PathSegmentConverter):
    """A recommendation's upstream id: up to 64 characters of any kind, ``/`` included."""

    regex = r"[\s\S]+"


register_converter(PathSegmentConverter, "audit_segment")
register_converter(RecommendationIdConverter, "recommendation_id")


#: Row ids are 64-bit integers in every database; a larger number is no id, and refused with a
#: 400 rather than handed to the database driver.
MAX_ID = 2**63 - 1


def id_filter(field: str) -> filters.NumberFilter:
    """An id filter that accepts whole numbers within a database id's range only."""
    return filters.NumberFilter(
        field_name=field, min_value=1, max_value=MAX_ID, decimal_places=0, label=f"{field} (id)"
    )


def pool_filter() -> filters.CharFilter:
    return filters.CharFilter(field_name="pool__name", label="Pool name")


def entity_filter() -> filters.CharFilter:
    return filters.CharFilter(field_name="entity_id", label="Entity symbol")


class AuditList(generics.ListAPIView):
    permission_classes = [ReadAudit]


class AuditDetail(generics.RetrieveAPIView):
    permission_classes = [ReadAudit]


def list_schema(serializer, summary: str):
    return extend_schema(summary=summary, responses={200: serializer, **LIST_ERRORS})


def detail_schema(serializer, summary: str, parameters=(ID_PARAMETER,)):
    return extend_schema(
        summary=summary, parameters=list(parameters), responses={200: serializer, **DETAIL_ERRORS}
    )


# --- decisions --------------------------------------------------------------------------------


class DecisionFilter(filters.FilterSet):
    pool = pool_filter()
    entity = entity_filter()
    recommendation = filters.CharFilter(field_name="recommendation_id")
    outcome = filters.ChoiceFilter(choices=DecisionOutcome.choices)
    skip_reason = filters.ChoiceFilter(choices=SkipReason.choices)
    processed = filters.BooleanFilter()
    evaluated_after, evaluated_before = time_range("evaluated_at")

    class Meta:
        model = DecisionRecord
        fields = ()


def decisions():
    return DecisionRecord.objects.select_related("pool")


@list_schema(s.DecisionSerializer, "Decisions, newest first, with their traces")
class DecisionList(AuditList):
    serializer_class = s.DecisionSerializer
    filterset_class = DecisionFilter
    pagination_class = cursor_pagination("-evaluated_at", "-id")

    def get_queryset(self):
        return decisions()


@detail_schema(s.DecisionSerializer, "One decision with its trace")
class DecisionDetail(AuditDetail):
    serializer_class = s.DecisionSerializer

    def get_queryset(self):
        return decisions()


# --- orders -----------------------------------------------------------------------------------


class OrderFilter(filters.FilterSet):
    pool = pool_filter()
    entity = entity_filter()
    status = filters.ChoiceFilter(choices=OrderStatus.choices)
    side = filters.ChoiceFilter(choices=OrderSide.choices)
    reason = filters.ChoiceFilter(choices=OrderReason.choices)
    recommendation = filters.CharFilter(field_name="recommendation_id")
    decision = id_filter("decision_id")
    commitment = id_filter("commitment_id")
    created_after, created_before = time_range("created_at")

    class Meta:
        model = Order
        fields = ()


def risk_evaluations_oldest_first() -> Prefetch:
    return Prefetch(
        "risk_evaluations", queryset=RiskEvaluation.objects.order_by("evaluated_at", "id")
    )


def orders():
    return Order.objects.select_related("pool").prefetch_related(risk_evaluations_oldest_first())


@list_schema(s.OrderSerializer, "Orders, newest first, with their risk evaluations")
class OrderList(AuditList):
    serializer_class = s.OrderSerializer
    filterset_class = OrderFilter
    pagination_class = cursor_pagination("-created_at", "-id")

    def get_queryset(self):
        return orders()


@detail_schema(s.OrderSerializer, "One order with the broker's answers and its risk evaluations")
class OrderDetail(AuditDetail):
    serializer_class = s.OrderSerializer

    def get_queryset(self):
        return orders()


# --- commitments ------------------------------------------------------------------------------


class CommitmentFilter(filters.FilterSet):
    pool = pool_filter()
    entity = entity_filter()
    status = filters.ChoiceFilter(choices=CommitmentStatus.choices)
    opened_after, opened_before = time_range("opened_at")
    closed_after, closed_before = time_range("closed_at")

    class Meta:
        model = Commitment
        fields = ()


def commitments():
    return Commitment.objects.select_related("pool")


@list_schema(s.CommitmentSerializer, "Commitments, newest opened first")
class CommitmentList(AuditList):
    serializer_class = s.CommitmentSerializer
    filterset_class = CommitmentFilter
    pagination_class = cursor_pagination("-opened_at", "-id")

    def get_queryset(self):
        return commitments()


@detail_schema(s.CommitmentSerializer, "One commitment")
class CommitmentDetail(AuditDetail):
    serializer_class = s.CommitmentSerializer

    def get_queryset(self):
        return commitments()


# --- the pool-level audit tables --------------------------------------------------------------


class SnapshotFilter(filters.FilterSet):
    pool = pool_filter()
    taken_after, taken_before = time_range("taken_at")

    class Meta:
        model = PoolSnapshot
        fields = ()


@list_schema(s.PoolSnapshotSerializer, "Daily pool snapshots, newest session first")
class SnapshotList(AuditList):
    serializer_class = s.PoolSnapshotSerializer
    filterset_class = SnapshotFilter
    pagination_class = cursor_pagination("-taken_at", "-id")

    def get_queryset(self):
        return PoolSnapshot.objects.select_related("pool")


class LedgerFilter(filters.FilterSet):
    pool = pool_filter()
    entity = entity_filter()
    trigger = filters.ChoiceFilter(choices=LedgerTrigger.choices)
    created_after, created_before = time_range("created_at")

    class Meta:
        model = ReserveLedgerEntry
        fields = ()


@list_schema(s.ReserveLedgerEntrySerializer, "Reserve ledger movements, newest first")
class LedgerList(AuditList):
    serializer_class = s.ReserveLedgerEntrySerializer
    filterset_class = LedgerFilter
    pagination_class = cursor_pagination("-created_at", "-id")

    def get_queryset(self):
        return ReserveLedgerEntry.objects.select_related("pool")


class TierHistoryFilter(filters.FilterSet):
    pool = pool_filter()
    trigger = filters.ChoiceFilter(choices=TierTrigger.choices)
    new_tier = filters.ChoiceFilter(choices=RiskTier.choices)
    changed_after, changed_before = time_range("changed_at")

    class Meta:
        model = RiskTierHistory
        fields = ()


@list_schema(s.RiskTierHistorySerializer, "Risk tier changes, newest first")
class TierHistoryList(AuditList):
    serializer_class = s.RiskTierHistorySerializer
    filterset_class = TierHistoryFilter
    pagination_class = cursor_pagination("-changed_at", "-id")

    def get_queryset(self):
        return RiskTierHistory.objects.select_related("pool")


class BreakerEventFilter(filters.FilterSet):
    pool = pool_filter()
    entity = entity_filter()
    trigger_type = filters.ChoiceFilter(choices=BreakerType.choices)
    cleared = filters.BooleanFilter(
        field_name="cleared_at", lookup_expr="isnull", exclude=True, label="Cleared by an operator"
    )
    triggered_after, triggered_before = time_range("triggered_at")

    class Meta:
        model = CircuitBreakerEvent
        fields = ()


@list_schema(s.CircuitBreakerEventSerializer, "Circuit breaker events, newest first")
class BreakerEventList(AuditList):
    serializer_class = s.CircuitBreakerEventSerializer
    filterset_class = BreakerEventFilter
    pagination_class = cursor_pagination("-triggered_at", "-id")

    def get_queryset(self):
        return CircuitBreakerEvent.objects.select_related("pool")


class OperatorActionFilter(filters.FilterSet):
    pool = pool_filter()
    action = filters.ChoiceFilter(choices=OperatorActionKind.choices)
    actor = filters.CharFilter()
    created_after, created_before = time_range("created_at")

    class Meta:
        model = OperatorAction
        fields = ()


@list_schema(s.OperatorActionSerializer, "Operator actions, newest first")
class OperatorActionList(AuditList):
    serializer_class = s.OperatorActionSerializer
    filterset_class = OperatorActionFilter
    pagination_class = cursor_pagination("-created_at", "-id")

    def get_queryset(self):
        return OperatorAction.objects.select_related("pool")


class FillFilter(filters.FilterSet):
    pool = pool_filter()
    entity = entity_filter()
    side = filters.ChoiceFilter(choices=FillSide.choices)
    order = id_filter("order_id")
    commitment = id_filter("commitment_id")
    booked_after, booked_before = time_range("booked_at")

    class Meta:
        model = Fill
        fields = ()


@list_schema(s.FillSerializer, "Fills booked into the books, newest first")
class FillList(AuditList):
    serializer_class = s.FillSerializer
    filterset_class = FillFilter
    pagination_class = cursor_pagination("-booked_at", "-id")

    def get_queryset(self):
        return Fill.objects.select_related("pool")


# --- pools: the read model --------------------------------------------------------------------


def read_pool(pool: Pool, now) -> s.PoolReading:
    """``pool`` as of ``now`` through the read model. Seven queries (pending orders, tier, open
    commitments, bars, the session's fills, breakers, reconciliation holds), eight when
    ``pool`` was not loaded with its engine configuration."""
    config = getattr(pool, "engine_config", None) or get_engine_config(pool)
    return s.PoolReading(pool=pool, state=pool_as_of(pool, now, config=config), config=config)


class PoolFilter(filters.FilterSet):
    mode = filters.ChoiceFilter(choices=Pool._meta.get_field("mode").choices)
    halted = filters.BooleanFilter()

    class Meta:
        model = Pool
        fields = ()


@list_schema(s.PoolSerializer, "Pools with the headline numbers of their state now")
class PoolList(AuditList):
    """Pools by name, each valued as of now through the read model.

    Not constant in the page size: each pool on the page costs the read model's queries
    (seven, see ``read_pool``). A desk runs a handful of pools, so this is bounded in practice;
    ``page_size`` bounds it otherwise.
    """

    serializer_class = s.PoolSerializer
    filterset_class = PoolFilter
    pagination_class = cursor_pagination("name")

    def get_queryset(self):
        return Pool.objects.select_related("engine_config", "shadow_of")

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        now = timezone.now()
        readings = [read_pool(pool, now) for pool in page]
        return self.get_paginated_response(self.get_serializer(readings, many=True).data)


@detail_schema(
    s.PoolStateSerializer,
    "A pool as of now: value, reserve, exposure against its cap, daily gain against the loss "
    "limit, breakers in force, cooldowns, open commitments with their levels",
    parameters=[OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH)],
)
class PoolDetail(AuditDetail):
    serializer_class = s.PoolStateSerializer

    def retrieve(self, request, *args, **kwargs):
        pool = get_object_or_404(
            Pool.objects.select_related("engine_config", "shadow_of"), name=kwargs["name"]
        )
        return Response(self.get_serializer(read_pool(pool, timezone.now())).data)


# --- explain ----------------------------------------------------------------------------------


@detail_schema(
    s.ExplainSerializer,
    "The whole chain of a recommendation: decisions with traces, orders, risk evaluations, "
    "broker answers, fills and the commitments they moved",
    parameters=[
        OpenApiParameter(
            "id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The upstream id"
        )
    ],
)
class RecommendationExplain(AuditDetail):
    """Five queries whatever the chain's length: the recommendation, its decisions, their
    orders, the orders' risk evaluations, and the fills with their commitments."""

    serializer_class = s.ExplainSerializer

    def retrieve(self, request, *args, **kwargs):
        recommendation = get_object_or_404(Recommendation.objects.all(), pk=kwargs["pk"])
        decision_rows = list(
            DecisionRecord.objects.filter(recommendation=recommendation)
            .select_related("pool")
            .order_by("evaluated_at", "id")
        )
        fills = Fill.objects.select_related("pool", "commitment__pool").order_by("booked_at", "id")
        order_rows = (
            Order.objects.filter(
                Q(recommendation=recommendation) | Q(decision__recommendation=recommendation)
            )
            .select_related("pool")
            .prefetch_related(risk_evaluations_oldest_first(), Prefetch("fills", queryset=fills))
            .order_by("created_at", "id")
        )
        by_decision = defaultdict(list)
        for order in order_rows:
            by_decision[order.decision_id].append(order)
        for decision in decision_rows:
            decision.explain_orders = by_decision.pop(decision.pk, [])
        chain = {
            "recommendation": recommendation,
            "decisions": decision_rows,
            "other_orders": [order for orders in by_decision.values() for order in orders],
        }
        return Response(self.get_serializer(chain).data)


urlpatterns = [
    path("decisions/", DecisionList.as_view(), name="api-decisions"),
    path("decisions/<audit_segment:pk>/", DecisionDetail.as_view(), name="api-decision"),
    path("orders/", OrderList.as_view(), name="api-orders"),
    path("orders/<audit_segment:pk>/", OrderDetail.as_view(), name="api-order"),
    path("commitments/", CommitmentList.as_view(), name="api-commitments"),
    path("commitments/<audit_segment:pk>/", CommitmentDetail.as_view(), name="api-commitment"),
    path("pools/", PoolList.as_view(), name="api-pools"),
    path("pools/<audit_segment:name>/", PoolDetail.as_view(), name="api-pool"),
    path("snapshots/", SnapshotList.as_view(), name="api-snapshots"),
    path("reserve-ledger/", LedgerList.as_view(), name="api-reserve-ledger"),
    path("tier-history/", TierHistoryList.as_view(), name="api-tier-history"),
    path("breaker-events/", BreakerEventList.as_view(), name="api-breaker-events"),
    path("operator-actions/", OperatorActionList.as_view(), name="api-operator-actions"),
    path("fills/", FillList.as_view(), name="api-fills"),
    path(
        "recommendations/<recommendation_id:pk>/explain/",
        RecommendationExplain.as_view(),
        name="api-recommendation-explain",
    ),
]
