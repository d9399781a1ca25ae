"""API: ingest endpoints — recommendations, entities, market snapshots, performance reports.

``POST`` takes one JSON object or a list of up to ``API_MAX_BATCH`` of them and validates them
with the import commands' own validators (``decisions.imports.parse_recommendation``,
``portfolio.imports.validate_*``): all or nothing, a 400 listing every problem keyed by list
index (``"3.confidence"``), nothing written. Writes go through the imports' write functions in
one transaction. Recommendations are idempotent on ``id`` (the same payload again answers 200
with nothing changed; another payload under a stored ``id`` answers 409) and a fresh one asks
for a decision cycle of every pool that can take it, on commit. Entities and market snapshots
are upserts, report dates are added (a date already stored is unchanged).

``GET`` lists what ingest wrote, newest first, with cursor pagination (no ``COUNT(*)``) and a
fixed number of queries whatever the page size. Roles: ``IngestRole`` (ingest or operator
writes; ingest, operator or viewer reads). Writes are throttled under the ``ingest`` scope.
See docs/api.md and the OpenAPI schema at ``/api/schema/``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.urls import path
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from decisions.imports import (
    RecommendationInput,
    RecommendationInvalid,
    ingest_recommendations,
    parse_recommendation,
)
from decisions.models import Recommendation, RecommendationAction, RecommendationMode
from portfolio.imports import (
    DateLimits,
    ImportResult,
    LineError,
    records_from_json,
    validate_entities,
    validate_reports,
    validate_snapshots,
    write_entities,
    write_reports,
    write_snapshots,
)
from portfolio.models import Entity, MarketSnapshot, PerformanceReport
from project.api.errors import bad_request
from project.api.filters import time_range
from project.api.pagination import cursor_pagination
from project.api.permissions import IngestRole

NOTHING_WRITTEN = "Invalid input: nothing was written."

# ---------------------------------------------------------------------------------------------
# Response and request shapes (OpenAPI)


class IngestErrorSerializer(serializers.Serializer):
    """Every error: ``errors`` maps a field (``"3.confidence"``: item 3 of the batch) to its
    problems; it is empty when the problem is the request as a whole."""

    detail = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class IngestResultSerializer(serializers.Serializer):
    """What a POST did, in rows: ``rows`` received, of which ``created``, ``updated`` and
    ``unchanged`` (identical to what was stored)."""

    rows = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()


class RecommendationIngestResultSerializer(IngestResultSerializer):
    cycles_requested = serializers.IntegerField(
        help_text="Pools a decision cycle was asked for (at most one is queued per pool)."
    )


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(IngestErrorSerializer, description=description)


READ_ERRORS = {
    400: _error("A filter value is invalid."),
    401: _error("Not authenticated."),
    403: _error("The role does not allow reading this."),
    404: _error("The cursor is invalid."),
}


def _write_responses(result: type[serializers.Serializer], extra: dict | None = None) -> dict:
    return {
        200: OpenApiResponse(result, description="Nothing new: every row was already stored."),
        201: OpenApiResponse(result, description="Stored."),
        400: _error("Invalid input (listed by item and field); nothing was written."),
        401: _error("Not authenticated."),
        403: _error("The ingest or operator role is needed."),
        413: _error("The body is larger than API_MAX_BODY_BYTES."),
        415: _error("The body is not JSON."),
        429: _error("Too many writes (the ingest throttle); retry after Retry-After seconds."),
        **(extra or {}),
    }


SYMBOL_SCHEMA = {"type": "string", "pattern": r"^\s*[A-Za-z0-9.\-]{1,16}\s*$"}
DECIMAL_SCHEMA = {
    "oneOf": [{"type": "number"}, {"type": "string"}],
    "description": "A decimal number, at most 4 decimal places; a string keeps it exact.",
}


def _batch_schema(item: dict) -> dict:
    """One object, or a list of 1 to API_MAX_BATCH of them."""
    return {
        "application/json": {
            "oneOf": [
                item,
                {"type": "array", "items": item, "minItems": 1, "maxItems": 10_000},
            ]
        }
    }


RECOMMENDATION_IN = {
    "type": "object",
    "required": ["id", "entity", "action", "mode", "confidence", "generated_at"],
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"\S"},
        "entity": SYMBOL_SCHEMA,
        "action": {"type": "string", "enum": list(RecommendationAction.values)},
        "mode": {"type": "string", "enum": list(RecommendationMode.values)},
        "confidence": {
            "oneOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "string"}],
            "description": "A fraction in [0, 1] (0.72, not 72); rounded to 5 decimal places.",
        },
        "generated_at": {
            "type": "string",
            "format": "date-time",
            "description": "With an offset; at most FUTURE_TOLERANCE_SECONDS after now.",
        },
        "thesis": {"type": "string", "nullable": True},
        "risk_classification": {"type": "string", "maxLength": 32, "nullable": True},
    },
}
ENTITY_IN = {
    "type": "object",
    "required": ["symbol", "sector"],
    "properties": {
        "symbol": SYMBOL_SCHEMA,
        "name": {"type": "string", "maxLength": 200, "nullable": True},
        "sector": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"\S"},
    },
}
SNAPSHOT_IN = {
    "type": "object",
    "required": ["entity", "as_of", "high", "low", "close"],
    "properties": {
        "entity": SYMBOL_SCHEMA,
        "as_of": {
            "type": "string",
            "description": (
                "A session date YYYY-MM-DD (read as that NYSE session's close) or an ISO-8601 "
                "timestamp with an offset; at most FUTURE_TOLERANCE_SECONDS after now."
            ),
        },
        "open": {**DECIMAL_SCHEMA, "nullable": True},
        "high": DECIMAL_SCHEMA,
        "low": DECIMAL_SCHEMA,
        "close": DECIMAL_SCHEMA,
        "volume": {
            "oneOf": [{"type": "integer", "minimum": 0}, {"type": "string"}],
            "nullable": True,
        },
    },
}
REPORT_IN = {
    "type": "object",
    "required": ["entity", "report_date"],
    "properties": {
        "entity": SYMBOL_SCHEMA,
        "report_date": {
            "type": "string",
            "format": "date",
            "description": "At most 730 days after today.",
        },
    },
}


class RecommendationRowSerializer(serializers.ModelSerializer):
    entity = serializers.CharField(source="entity_id", read_only=True)

    class Meta:
        model = Recommendation
        fields = [
            "id",
            "entity",
            "action",
            "mode",
            "confidence",
            "generated_at",
            "thesis",
            "risk_classification",
            "received_at",
        ]
        read_only_fields = fields


class EntityRowSerializer(serializers.ModelSerializer):
    class Meta:
        model = Entity
        fields = ["symbol", "name", "sector", "created_at"]
        read_only_fields = fields


class MarketSnapshotRowSerializer(serializers.ModelSerializer):
    entity = serializers.CharField(source="entity_id", read_only=True)

    class Meta:
        model = MarketSnapshot
        fields = ["id", "entity", "as_of", "open", "high", "low", "close", "volume"]
        read_only_fields = fields


class PerformanceReportRowSerializer(serializers.ModelSerializer):
    entity = serializers.CharField(source="entity_id", read_only=True)

    class Meta:
        model = PerformanceReport
        fields = ["id", "entity", "report_date"]
        read_only_fields = fields


# ---------------------------------------------------------------------------------------------
# Filters


class SymbolFilter(filters.CharFilter):
    """An entity symbol, matched upper-cased."""

    def filter(self, qs, value):
        return super().filter(qs, value.strip().upper() if value else value)


class RecommendationFilter(filters.FilterSet):
    entity = SymbolFilter(field_name="entity_id", help_text="Entity symbol.")
    action = filters.ChoiceFilter(choices=RecommendationAction.choices)
    mode = filters.ChoiceFilter(choices=RecommendationMode.choices)
    generated_at_after, generated_at_before = time_range("generated_at")

    class Meta:
        model = Recommendation
        fields: list[str] = []


class EntityFilter(filters.FilterSet):
    sector = filters.CharFilter(field_name="sector")

    class Meta:
        model = Entity
        fields: list[str] = []


class MarketSnapshotFilter(filters.FilterSet):
    entity = SymbolFilter(field_name="entity_id", help_text="Entity symbol.")
    as_of_after, as_of_before = time_range("as_of")

    class Meta:
        model = MarketSnapshot
        fields: list[str] = []


class PerformanceReportFilter(filters.FilterSet):
    entity = SymbolFilter(field_name="entity_id", help_text="Entity symbol.")
    report_date_after = filters.DateFilter(field_name="report_date", lookup_expr="gte")
    report_date_before = filters.DateFilter(field_name="report_date", lookup_expr="lte")

    class Meta:
        model = PerformanceReport
        fields: list[str] = []


# ---------------------------------------------------------------------------------------------
# Views


def batch_items(data: Any) -> list[Any]:
    """The items of a POST body: one object is a batch of one. Raises ``ValidationError`` for
    a body that is neither, an empty list, or a list longer than ``API_MAX_BATCH``."""
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list):
        raise ValidationError({"non_field_errors": ["Expected a JSON object or a list of them."]})
    limit = settings.API_MAX_BATCH
    if not data:
        raise ValidationError({"non_field_errors": ["The list is empty."]})
    if len(data) > limit:
        raise ValidationError(
            {"non_field_errors": [f"The list holds {len(data)} items; at most {limit} per call."]}
        )
    return data


def line_errors(errors: Sequence[LineError]) -> dict[str, list[str]]:
    """Validation problems keyed by the item's index in the batch."""
    keyed: dict[str, list[str]] = {}
    for error in errors:
        keyed.setdefault(str(error.line), []).append(error.message)
    return keyed


def _written(result: ImportResult, **extra: int) -> Response:
    body = {
        "rows": result.rows,
        "created": result.created,
        "updated": result.updated,
        "unchanged": result.unchanged,
        **extra,
    }
    changed = result.created or result.updated
    return Response(body, status=status.HTTP_201_CREATED if changed else status.HTTP_200_OK)


class IngestListView(ListAPIView):
    """A list of what ingest wrote (GET) and its batch upsert (POST)."""

    permission_classes = [IngestRole]
    throttle_scope = "ingest"

    def get_throttles(self):
        if self.request.method == "POST":
            return [ScopedRateThrottle()]
        return []


@extend_schema_view(
    get=extend_schema(
        summary="List recommendations, newest generated first",
        responses={200: RecommendationRowSerializer, **READ_ERRORS},
    )
)
class RecommendationsView(IngestListView):
    queryset = Recommendation.objects.order_by("-generated_at", "-id")
    serializer_class = RecommendationRowSerializer
    filterset_class = RecommendationFilter
    pagination_class = cursor_pagination("-generated_at", "-id")

    @extend_schema(
        summary="Ingest recommendations (one object or a list), all or nothing",
        description=(
            "The fields and validation of `import_recommendations`. Idempotent on `id`: the "
            "same payload again answers 200 with nothing changed; another payload under a "
            "stored `id` answers 409 and nothing is written. A fresh executable "
            "recommendation asks for a decision cycle of every pool that can take it."
        ),
        request=_batch_schema(RECOMMENDATION_IN),
        responses=_write_responses(
            RecommendationIngestResultSerializer,
            {409: _error("An id is stored with a different payload; nothing was written.")},
        ),
    )
    def post(self, request, *args, **kwargs):
        items = batch_items(request.data)
        now = timezone.now()
        limits = DateLimits.as_of(now)
        errors: dict[str, list[str]] = {}
        parsed: list[RecommendationInput] = []
        first: dict[str, int] = {}
        for index, data in enumerate(items):
            try:
                item = parse_recommendation(data, limits=limits)
            except RecommendationInvalid as exc:
                for name, message in exc.errors.items():
                    errors[f"{index}.{name}" if name else str(index)] = [message]
                continue
            if item.id in first:
                errors[f"{index}.id"] = [f"id {item.id!r} repeats item {first[item.id]}"]
                continue
            first[item.id] = index
            parsed.append(item)
        if errors:
            return bad_request(errors)
        result = ingest_recommendations(parsed, now=now)
        if result.problems:
            return bad_request({f"{i}.entity": found for i, found in result.problems.items()})
        if result.conflicts:
            return Response(
                {
                    "detail": "An id is already stored with a different payload: "
                    "nothing was written.",
                    "errors": {f"{i}.id": [message] for i, message in result.conflicts.items()},
                },
                status=status.HTTP_409_CONFLICT,
            )
        return _written(
            ImportResult("recommendations", result.rows, result.created, 0, result.unchanged),
            cycles_requested=len(result.cycles_for),
        )


def _batch_post(
    fields: dict[str, str], validate: Callable, write: Callable[[Any], ImportResult]
) -> Callable:
    """A POST handler: JSON items → the import's records → its validator → its writer."""

    def post(self, request, *args, **kwargs):
        items = batch_items(request.data)
        errors: list[LineError] = []
        valid = validate(records_from_json(items, fields, errors), errors, timezone.now())
        if errors:
            return bad_request(line_errors(errors))
        return _written(write(valid))

    return post


@extend_schema_view(
    get=extend_schema(
        summary="List entities by symbol", responses={200: EntityRowSerializer, **READ_ERRORS}
    ),
    post=extend_schema(
        summary="Upsert entities by symbol (one object or a list), all or nothing",
        description="The fields and validation of `import_entities`.",
        request=_batch_schema(ENTITY_IN),
        responses=_write_responses(IngestResultSerializer),
    ),
)
class EntitiesView(IngestListView):
    queryset = Entity.objects.order_by("symbol")
    serializer_class = EntityRowSerializer
    filterset_class = EntityFilter
    pagination_class = cursor_pagination("symbol")

    post = _batch_post(
        {"symbol": "symbol", "name": "name", "sector": "sector"},
        lambda records, errors, now: validate_entities(records, errors, where="item"),
        write_entities,
    )


@extend_schema_view(
    get=extend_schema(
        summary="List market snapshots (bars), newest first",
        responses={200: MarketSnapshotRowSerializer, **READ_ERRORS},
    ),
    post=extend_schema(
        summary="Upsert market snapshots on (entity, as_of) (one object or a list), all or nothing",
        description="The fields and validation of `import_snapshots`.",
        request=_batch_schema(SNAPSHOT_IN),
        responses=_write_responses(IngestResultSerializer),
    ),
)
class MarketSnapshotsView(IngestListView):
    queryset = MarketSnapshot.objects.order_by("-as_of", "-id")
    serializer_class = MarketSnapshotRowSerializer
    filterset_class = MarketSnapshotFilter
    pagination_class = cursor_pagination("-as_of", "-id")

    post = _batch_post(
        {name: name for name in ("as_of", "open", "high", "low", "close", "volume")}
        | {"entity": "symbol"},
        lambda records, errors, now: validate_snapshots(
            records, errors, limits=DateLimits.as_of(now), now=now, where="item"
        ),
        write_snapshots,
    )


@extend_schema_view(
    get=extend_schema(
        summary="List performance report dates, latest first",
        responses={200: PerformanceReportRowSerializer, **READ_ERRORS},
    ),
    post=extend_schema(
        summary="Add performance report dates (one object or a list), all or nothing",
        description="The fields and validation of `import_reports`.",
        request=_batch_schema(REPORT_IN),
        responses=_write_responses(IngestResultSerializer),
    ),
)
class PerformanceReportsView(IngestListView):
    queryset = PerformanceReport.objects.order_by("-report_date", "-id")
    serializer_class = PerformanceReportRowSerializer
    filterset_class = PerformanceReportFilter
    pagination_class = cursor_pagination("-report_date", "-id")

    post = _batch_post(
        {"entity": "symbol", "report_date": "report_date"},
        lambda records, errors, now: validate_reports(
            records, errors, limits=DateLimits.as_of(now)
        ),
        write_reports,
    )


urlpatterns = [
    path("recommendations/", RecommendationsView.as_view(), name="api-recommendations"),
    path("entities/", EntitiesView.as_view(), name="api-entities"),
    path("market-snapshots/", MarketSnapshotsView.as_view(), name="api-market-snapshots"),
    path(
        "performance-reports/",
        PerformanceReportsView.as_view(),
        name="api-performance-reports",
    ),
]
