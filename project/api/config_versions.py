"""API: the configuration versions (see docs/api.md), read-only, viewer and operator roles.

- ``GET /api/v1/config-versions/``: every version, newest first (cursor-paginated); ``pool``
  narrows to the versions a pool decided with.
- ``GET /api/v1/config-versions/{digest}/``: one version with its canonical document.
- ``GET /api/v1/config-versions/{digest}/diff/?against=<digest>``: what changed from
  ``against`` to ``digest``, setting by setting, each with a sentence.

A digest may be given whole (64 hex digits) or by its first characters (at least 8) when they
name one version. Versions are written by the decision cycle (``portfolio.config_versions``),
never through the API.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef
from django.urls import path
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from decisions.models import DecisionRecord
from portfolio.config_versions import describe_changes, diff_documents
from portfolio.models import ConfigVersion
from project.api import serializers_audit as s
from project.api.audit import (
    DETAIL_ERRORS,
    AuditDetail,
    AuditList,
    ErrorSerializer,
    list_schema,
)
from project.api.filters import time_range
from project.api.pagination import cursor_pagination

#: The shortest digest prefix accepted.
MIN_PREFIX = 8
HEX = frozenset("0123456789abcdef")


def find_version(text: str, *, field: str | None = None) -> ConfigVersion:
    """The version whose digest is ``text`` or starts with it. A 404 (or, for a query
    parameter named ``field``, a 400 naming it) when none or several match. One query."""
    digest = (text or "").strip().lower()
    problem = None
    if not MIN_PREFIX <= len(digest) <= 64 or not set(digest) <= HEX:
        problem = f"a digest is {MIN_PREFIX} to 64 hex digits"
    else:
        rows = list(ConfigVersion.objects.filter(digest__startswith=digest)[:2])
        if len(rows) == 1:
            return rows[0]
        problem = "several versions start with it" if rows else "no such version"
    if field:
        raise ValidationError({field: [f"{text!r}: {problem}"]})
    raise NotFound(f"No configuration version {text!r}: {problem}.")


# --- serializers ------------------------------------------------------------------------------


class ConfigVersionSerializer(s.AuditModelSerializer):
    first_pool = s.pool_name(help_text="The pool whose decision cycle first used it")

    class Meta:
        model = ConfigVersion
        fields = ("digest", "created_at", "first_pool")


class ConfigVersionDetailSerializer(ConfigVersionSerializer):
    content = serializers.JSONField(
        read_only=True,
        help_text="The canonical document: engine (setting → value), tiers (tier → parameter → "
        "value), format; decimals as text",
    )

    class Meta(ConfigVersionSerializer.Meta):
        fields = (*ConfigVersionSerializer.Meta.fields, "content")


class ChangeSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="engine.<setting> or tiers.<tier>.<parameter>")
    setting = serializers.CharField()
    tier = serializers.CharField(allow_null=True, help_text="The tier, for a tier parameter")
    before = serializers.JSONField(allow_null=True, help_text="null: absent from ``from``")
    after = serializers.JSONField(allow_null=True, help_text="null: absent from ``to``")
    sentence = serializers.CharField(
        help_text="changed `max_sector_pct` of moderate from 0.3 to 0.25"
    )


class DiffSerializer(serializers.Serializer):
    from_version = serializers.CharField(help_text="The digest compared against")
    to_version = serializers.CharField(help_text="The digest of the path")
    summary = serializers.CharField(help_text="Every change in one line")
    changes = ChangeSerializer(many=True)


# --- views ------------------------------------------------------------------------------------


class ConfigVersionFilter(filters.FilterSet):
    pool = filters.CharFilter(method="used_by", label="Versions the pool (a name) decided with")
    created_after, created_before = time_range("created_at")

    class Meta:
        model = ConfigVersion
        fields = ()

    def used_by(self, queryset, name, value):
        used = DecisionRecord.objects.filter(pool__name=value, config_version=OuterRef("pk"))
        return queryset.filter(Exists(used))


@list_schema(ConfigVersionSerializer, "Configuration versions, newest first")
class ConfigVersionList(AuditList):
    serializer_class = ConfigVersionSerializer
    filterset_class = ConfigVersionFilter
    pagination_class = cursor_pagination("-created_at", "-digest")

    def get_queryset(self):
        return ConfigVersion.objects.select_related("first_pool")


DIGEST_PARAMETER = OpenApiParameter(
    "digest",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description=f"The digest, or its first characters (at least {MIN_PREFIX})",
)


@extend_schema(
    summary="One configuration version with its canonical document",
    parameters=[DIGEST_PARAMETER],
    responses={200: ConfigVersionDetailSerializer, **DETAIL_ERRORS},
)
class ConfigVersionDetail(AuditDetail):
    serializer_class = ConfigVersionDetailSerializer

    def retrieve(self, request, *args, **kwargs):
        return Response(self.get_serializer(find_version(kwargs["digest"])).data)


@extend_schema(
    summary="What changed from one configuration version (against) to another (the path's)",
    parameters=[
        DIGEST_PARAMETER,
        OpenApiParameter(
            "against",
            OpenApiTypes.STR,
            OpenApiParameter.QUERY,
            required=True,
            description="The version compared against: a digest or its first characters",
        ),
    ],
    responses={
        200: DiffSerializer,
        400: OpenApiResponse(
            ErrorSerializer, description="``against`` missing or naming no version"
        ),
        **DETAIL_ERRORS,
    },
)
class ConfigVersionDiff(AuditDetail):
    serializer_class = DiffSerializer

    def retrieve(self, request, *args, **kwargs):
        version = find_version(kwargs["digest"])
        against = request.query_params.get("against")
        if not against:
            raise ValidationError({"against": ["the digest to compare against is required"]})
        before = find_version(against, field="against")
        changes = diff_documents(before.content, version.content)
        body = {
            "from_version": before.digest,
            "to_version": version.digest,
            "summary": describe_changes(before, version, changes),
            "changes": [change.as_dict() for change in changes],
        }
        return Response(self.get_serializer(body).data)


urlpatterns = [
    path("config-versions/", ConfigVersionList.as_view(), name="api-config-versions"),
    path(
        "config-versions/<audit_segment:digest>/",
        ConfigVersionDetail.as_view(),
        name="api-config-version",
    ),
    path(
        "config-versions/<audit_segment:digest>/diff/",
        ConfigVersionDiff.as_view(),
        name="api-config-version-diff",
    ),
]
