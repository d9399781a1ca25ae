"""API: position reconciliation events (see docs/api.md, docs/operations.md).

- ``GET /api/v1/reconciliation-events/?pool=&status=&subject=&entity=``: the differences
  position reconciliation found between the books and the broker, newest first (viewer,
  operator). An open ``units`` event holds its entity reduce-only.
- ``POST /api/v1/reconciliation-events/{id}/acknowledge/`` ``{"reason"}``: the operator's
  acknowledgement (``portfolio.actions.acknowledge_reconciliation``, ``via="api"``, the user as
  actor), which lifts the hold; answered like every control endpoint (``{"changed", "detail",
  "action"}``). Operator only, throttled with the scope ``control``. An unknown event is a 404,
  one already acknowledged a 400 saying by whom and when.
"""

from __future__ import annotations

from django.urls import path
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from portfolio.actions import acknowledge_reconciliation
from portfolio.models import ReconciliationEvent, ReconciliationStatus, ReconciliationSubject
from project.api.audit import MAX_ID, AuditList, list_schema, pool_filter
from project.api.control import (
    CONTROL_RESPONSES,
    VIA,
    ControlErrorSerializer,
    ControlResultSerializer,
    ReasonSerializer,
)
from project.api.filters import time_range
from project.api.pagination import cursor_pagination
from project.api.permissions import OperatorRole
from project.api.serializers_audit import AuditModelSerializer


class ReconciliationEventSerializer(AuditModelSerializer):
    pool = serializers.SlugRelatedField(slug_field="name", read_only=True)
    difference = serializers.DecimalField(
        max_digits=None,
        decimal_places=9,
        read_only=True,
        help_text="The broker's value less the books' (units or dollars)",
    )

    class Meta:
        model = ReconciliationEvent
        fields = (
            "id",
            "pool",
            "subject",
            "symbol",
            "books_value",
            "broker_value",
            "difference",
            "status",
            "first_seen_at",
            "last_seen_at",
            "seen_count",
            "agreed_at",
            "acknowledged_at",
            "acknowledged_by",
            "acknowledge_reason",
        )


class ReconciliationEventFilter(filters.FilterSet):
    pool = pool_filter()
    status = filters.ChoiceFilter(choices=ReconciliationStatus.choices)
    subject = filters.ChoiceFilter(choices=ReconciliationSubject.choices)
    entity = filters.CharFilter(field_name="symbol", label="Entity symbol")
    first_seen_after, first_seen_before = time_range("first_seen_at")

    class Meta:
        model = ReconciliationEvent
        fields = ()


@list_schema(
    ReconciliationEventSerializer,
    "Reconciliation events (books against the broker), newest first; an open units event "
    "holds its entity reduce-only",
)
class ReconciliationEventList(AuditList):
    serializer_class = ReconciliationEventSerializer
    filterset_class = ReconciliationEventFilter
    pagination_class = cursor_pagination("-first_seen_at", "-id")

    def get_queryset(self):
        return ReconciliationEvent.objects.select_related("pool")


class AcknowledgeView(APIView):
    permission_classes = [OperatorRole]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "control"

    @extend_schema(
        summary="Acknowledge a reconciliation event: the entity's reduce-only hold ends",
        parameters=[OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)],
        request=ReasonSerializer,
        responses={
            **CONTROL_RESPONSES,
            404: OpenApiResponse(ControlErrorSerializer, description="No such event"),
        },
        tags=["control"],
    )
    def post(self, request, pk: str):
        event = _event(pk)
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = acknowledge_reconciliation(
            event,
            actor=request.user.get_username(),
            reason=body.validated_data["reason"],
            now=timezone.now(),
            via=VIA,
        )
        return Response(
            ControlResultSerializer(
                {"changed": result.changed, "detail": result.detail, "action": result.record}
            ).data
        )


def _event(pk: str) -> ReconciliationEvent:
    """The event with id ``pk``; a JSON 404 otherwise (a value that cannot be an id never
    reaches the database)."""
    event = None
    if pk.isascii() and pk.isdigit() and 0 < int(pk) <= MAX_ID:
        event = ReconciliationEvent.objects.filter(pk=int(pk)).first()
    if event is None:
        raise NotFound(f"No reconciliation event {pk!r}.")
    return event


urlpatterns = [
    path(
        "reconciliation-events/",
        ReconciliationEventList.as_view(),
        name="api-reconciliation-events",
    ),
    path(
        "reconciliation-events/<audit_segment:pk>/acknowledge/",
        AcknowledgeView.as_view(),
        name="api-reconciliation-acknowledge",
    ),
]
