"""API: operating a pool (see docs/api.md), operator role only.

Every endpoint calls one audited action of ``portfolio.actions`` (or ``decisions.control`` for
a requested cycle) with ``via="api"`` and the user's username as the actor, so the admin, the
management commands and the API leave the same ``operator_actions`` rows. Each needs a
``reason``. The answer is ``{"changed", "detail", "action"}``: ``action`` is the audit row
written, ``null`` when there was nothing to change (halting a halted pool). A refusal of the
action is a 400 naming each field (``project.api.errors``); nothing was changed.

Throttled with the scope ``control`` (``API_CONTROL_RATE``).
"""

from __future__ import annotations

from datetime import UTC

from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from decisions.control import request_cycle
from portfolio.actions import (
    ActionResult,
    change_engine_config,
    change_pool_risk_limits,
    clear_breaker,
    halt_pool,
    resume_pool,
    set_risk_tier,
)
from portfolio.models import BreakerType, OperatorAction, Pool, RiskTier
from project.api.permissions import OperatorRole

VIA = "api"
_NAME_MAX = Pool._meta.get_field("name").max_length


# --- request and response bodies --------------------------------------------------------------


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=500, help_text="Why: stored in the audit row (required)"
    )


class ClearBreakerSerializer(ReasonSerializer):
    type = serializers.ChoiceField(choices=BreakerType.choices, help_text="Breaker type")
    entity = serializers.CharField(
        max_length=16,
        required=False,
        allow_blank=True,
        help_text="Only this entity's cooldown (a symbol); all of the type when omitted",
    )


class RiskTierSerializer(ReasonSerializer):
    tier = serializers.ChoiceField(choices=RiskTier.choices)


class SettingsSerializer(ReasonSerializer):
    settings = serializers.DictField(
        child=serializers.JSONField(),
        allow_empty=False,
        help_text="Setting name → new value (a number, or a number as text); "
        "all are applied or none",
    )


class OperatorActionRowSerializer(serializers.ModelSerializer):
    created_at = serializers.DateTimeField(default_timezone=UTC)

    class Meta:
        model = OperatorAction
        fields = ("id", "action", "actor", "reason", "via", "before", "after", "created_at")


class ControlResultSerializer(serializers.Serializer):
    changed = serializers.BooleanField(help_text="False when there was nothing to change")
    detail = serializers.CharField()
    action = OperatorActionRowSerializer(
        allow_null=True, help_text="The audit row written; null when nothing changed"
    )


class ControlErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = serializers.DictField(help_text="Field → its problems; empty when none applies")


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ControlErrorSerializer, description=description)


CONTROL_RESPONSES = {
    200: ControlResultSerializer,
    400: _error("Invalid input, or the action refused it: nothing was changed"),
    401: _error("No or bad credentials"),
    403: _error("Not an operator"),
    404: _error("No pool by that name"),
    413: _error("Body too large"),
    415: _error("Body is not JSON"),
    429: _error("Too many control requests: retry later"),
}


# --- views ------------------------------------------------------------------------------------


class PoolControl(APIView):
    """One control endpoint: parse the body, call ``perform``, render its ``ActionResult``."""

    permission_classes = [OperatorRole]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "control"
    serializer_class = ReasonSerializer

    def perform(self, pool: Pool, data: dict, **audit) -> ActionResult:
        raise NotImplementedError

    def control(self, request, name: str) -> Response:
        pool = _pool(name)
        body = self.serializer_class(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        result = self.perform(
            pool,
            data,
            actor=request.user.get_username(),
            reason=data.pop("reason"),
            now=timezone.now(),
            via=VIA,
        )
        return Response(
            ControlResultSerializer(
                {"changed": result.changed, "detail": result.detail, "action": result.record}
            ).data
        )


def _pool(name: str) -> Pool:
    """The pool named ``name``; a JSON 404 otherwise (a name that cannot be one never reaches
    the database)."""
    pool = None
    if len(name) <= _NAME_MAX and "\x00" not in name:
        pool = Pool.objects.filter(name=name).first()
    if pool is None:
        raise NotFound(f"No pool named {name!r}.")
    return pool


def _post(summary: str, serializer: type[serializers.Serializer]):
    return extend_schema(
        summary=summary, request=serializer, responses=CONTROL_RESPONSES, tags=["control"]
    )


class HaltView(PoolControl):
    def perform(self, pool, data, **audit):
        return halt_pool(pool, **audit)

    @_post("Halt a pool: no new entries; exits still flow", ReasonSerializer)
    def post(self, request, name: str):
        return self.control(request, name)


class ResumeView(PoolControl):
    def perform(self, pool, data, **audit):
        return resume_pool(pool, **audit)

    @_post("Lift an operator's halt", ReasonSerializer)
    def post(self, request, name: str):
        return self.control(request, name)


class ClearBreakerView(PoolControl):
    serializer_class = ClearBreakerSerializer

    def perform(self, pool, data, **audit):
        return clear_breaker(pool, data["type"], entity=data.get("entity") or None, **audit)

    @_post("Clear the circuit breakers of a type in force now", ClearBreakerSerializer)
    def post(self, request, name: str):
        return self.control(request, name)


class RiskTierView(PoolControl):
    serializer_class = RiskTierSerializer

    def perform(self, pool, data, **audit):
        return set_risk_tier(pool, data["tier"], **audit)

    @_post("Set the pool's risk tier by hand", RiskTierSerializer)
    def post(self, request, name: str):
        return self.control(request, name)


class RunCycleView(PoolControl):
    def perform(self, pool, data, **audit):
        return request_cycle(pool, **audit)

    @_post("Queue one decision cycle for the pool now (at most one waits)", ReasonSerializer)
    def post(self, request, name: str):
        return self.control(request, name)


class EngineConfigView(PoolControl):
    serializer_class = SettingsSerializer

    def perform(self, pool, data, **audit):
        return change_engine_config(pool, data["settings"], **audit)

    @_post("Change engine settings of the pool: all or none", SettingsSerializer)
    def patch(self, request, name: str):
        return self.control(request, name)


class RiskLimitsView(PoolControl):
    serializer_class = SettingsSerializer

    def perform(self, pool, data, **audit):
        return change_pool_risk_limits(pool, data["settings"], **audit)

    @_post("Change the execution gate's limits of the pool: all or none", SettingsSerializer)
    def patch(self, request, name: str):
        return self.control(request, name)


urlpatterns = [
    path("pools/<str:name>/halt/", HaltView.as_view(), name="api-pool-halt"),
    path("pools/<str:name>/resume/", ResumeView.as_view(), name="api-pool-resume"),
    path(
        "pools/<str:name>/clear-breaker/",
        ClearBreakerView.as_view(),
        name="api-pool-clear-breaker",
    ),
    path("pools/<str:name>/risk-tier/", RiskTierView.as_view(), name="api-pool-risk-tier"),
    path("pools/<str:name>/run-cycle/", RunCycleView.as_view(), name="api-pool-run-cycle"),
    path(
        "pools/<str:name>/engine-config/",
        EngineConfigView.as_view(),
        name="api-pool-engine-config",
    ),
    path("pools/<str:name>/risk-limits/", RiskLimitsView.as_view(), name="api-pool-risk-limits"),
]
