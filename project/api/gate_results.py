"""API: ``GET /api/v1/pools/{name}/gate-results/``, what each gate saved or cost a pool (see
docs/api.md and ``decisions.gate_results``).

``from`` and ``to`` bound the decisions (a date ``YYYY-MM-DD`` is a whole New York day, ``to``
included; an ISO 8601 time is taken as is, UTC without an offset); the default is the last 30
days. ``period`` (``day`` or ``week``) buckets the per-period sums. The paths are followed up to
the request's time. Read by the viewer and operator roles; a bad date is a 400 naming the field.
A fixed number of queries whatever the number of decisions (``gate_results``).
"""

from __future__ import annotations

from datetime import UTC

from django.urls import path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from decisions.counterfactual import PERIODS, ExitReason
from decisions.gate_results import WindowError, gate_results, parse_window
from portfolio.models import Pool
from project.api.audit import ErrorSerializer, ReadAudit

_NAME_MAX = Pool._meta.get_field("name").max_length


def _dollars(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=None, decimal_places=2, read_only=True, **kwargs)


def _price(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=None, decimal_places=4, read_only=True, **kwargs)


class ReasonTotalSerializer(serializers.Serializer):
    skip_reason = serializers.CharField(source="reason")
    label = serializers.CharField()
    kept_out = serializers.IntegerField(help_text="Commitments this gate kept out")
    result = _dollars(help_text="What they would have made together (negative: a loss saved)")
    no_value = serializers.IntegerField(help_text="Skipped without a current value: not followed")
    not_sized = serializers.IntegerField(
        help_text="Of kept_out, those the sizer would not have sized anyway (result 0)"
    )


class PeriodTotalSerializer(serializers.Serializer):
    start = serializers.DateField(help_text="First New York day of the period")
    kept_out = serializers.IntegerField()
    result = _dollars()
    reasons = ReasonTotalSerializer(many=True)


class KeptOutCommitmentSerializer(serializers.Serializer):
    recommendation = serializers.CharField(source="candidate.recommendation_id")
    entity = serializers.CharField(source="candidate.entity")
    skip_reason = serializers.CharField(source="candidate.skip_reason")
    decided_at = serializers.DateTimeField(source="candidate.decided_at", default_timezone=UTC)
    entry_value = _price(source="candidate.entry_value")
    units = serializers.DecimalField(
        source="candidate.units", max_digits=None, decimal_places=6, read_only=True
    )
    sized_by = serializers.CharField(source="candidate.sized_by")
    notes = serializers.ListField(child=serializers.CharField(), source="candidate.notes")
    exit_at = serializers.DateTimeField(default_timezone=UTC)
    exit_value = _price()
    exit_reason = serializers.ChoiceField(choices=[(r.value, r.value) for r in ExitReason])
    result = _dollars()


class GateResultsSerializer(serializers.Serializer):
    pool = serializers.CharField()
    start = serializers.DateTimeField(default_timezone=UTC, help_text="Decisions from (included)")
    end = serializers.DateTimeField(default_timezone=UTC, help_text="Decisions before")
    now = serializers.DateTimeField(default_timezone=UTC, help_text="Paths followed up to")
    period = serializers.ChoiceField(choices=[(p, p) for p in PERIODS])
    kept_out = serializers.IntegerField()
    result = _dollars()
    no_value = serializers.IntegerField()
    reasons = ReasonTotalSerializer(many=True, help_text="Largest |result| first")
    periods = PeriodTotalSerializer(many=True, help_text="Oldest first")
    commitments = KeptOutCommitmentSerializer(many=True, source="outcomes")


def _pool(name: str) -> Pool:
    pool = None
    if len(name) <= _NAME_MAX and "\x00" not in name:
        pool = Pool.objects.select_related("engine_config").filter(name=name).first()
    if pool is None:
        raise NotFound(f"No pool named {name!r}.")
    return pool


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


class GateResultsView(APIView):
    """What each gate saved or cost the pool over a window."""

    permission_classes = [ReadAudit]

    @extend_schema(
        summary="What each gate saved or cost: the commitments each skip reason kept out and "
        "what they would have made, per reason and per period",
        parameters=[
            OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH),
            OpenApiParameter(
                "from",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="First day (YYYY-MM-DD, New York) or ISO 8601 time; default: to − "
                "30 days",
            ),
            OpenApiParameter(
                "to",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="Last day, included (YYYY-MM-DD, New York), or ISO 8601 time "
                "(excluded); default: now",
            ),
            OpenApiParameter(
                "period",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=list(PERIODS),
                description="Bucket of the per-period sums (default: day)",
            ),
        ],
        responses={
            200: GateResultsSerializer,
            400: _error("A bad date or period"),
            401: _error("No or bad credentials"),
            403: _error("Neither the viewer nor the operator role"),
            404: _error("No pool by that name"),
        },
        tags=["pools"],
    )
    def get(self, request, name: str) -> Response:
        pool = _pool(name)
        now = timezone.now()
        params = request.query_params
        errors: dict[str, list[str]] = {}
        period = params.get("period") or "day"
        if period not in PERIODS:
            errors["period"] = [f"One of {', '.join(PERIODS)}."]
        try:
            start, end = parse_window(params.get("from"), params.get("to"), now)
        except WindowError as exc:
            errors.update({field: [message] for field, message in exc.errors.items()})
        if errors:
            raise ValidationError(errors)
        results = gate_results(pool, start, end, now, period=period)
        data = {
            "pool": pool.name,
            "start": results.start,
            "end": results.end,
            "now": results.now,
            "period": results.period,
            "kept_out": results.kept_out,
            "result": results.result,
            "no_value": results.no_value,
            "reasons": results.reasons,
            "periods": results.periods,
            "outcomes": results.outcomes,
        }
        return Response(GateResultsSerializer(data).data)


urlpatterns = [
    path("pools/<str:name>/gate-results/", GateResultsView.as_view(), name="api-pool-gate-results"),
]
