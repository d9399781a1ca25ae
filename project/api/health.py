"""``/healthz`` (anyone may ask) and ``/metrics`` (see ``project.api.metrics``).

``/healthz`` answers 200 when every part is up and 503 naming the failing parts otherwise:
``{"status": "ok"|"failing", "checks": {name: {"ok": bool, "detail": str}}}``. The parts:

- ``database``: one ``SELECT 1``;
- ``cache``: a value written and read back;
- ``task_queue``: at least one django-q2 cluster heartbeat (``Stat.get_all()``): no cluster
  running means no cycle, no order and no loop will run;
- ``execution_api:<pool>`` for each pool on the HTTP adapter: one ``GET /v2/account`` with a
  short timeout (pools that share the execution API share the one request);
- ``cycle:<pool>``: the age of the pool's last decision cycle (``loop_runs``), failing when
  older than ``STALE_INTERVALS`` × its ``polling_interval_seconds`` while the exchange is open
  (a pool that never cycled counts from its creation).

A bounded number of queries whatever the number of pools: the pools with their polling
interval and last cycle come in one query.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import OuterRef, Subquery
from django.urls import path
from django.utils import timezone
from django_q.status import Stat
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from execution.adapters import AlpacaHttpAdapter, BrokerUnavailable
from portfolio.heartbeat import DECISION_CYCLE
from portfolio.market_calendar import get_market_calendar
from portfolio.models import AdapterKind, LoopRun, Pool
from project.api.metrics import MetricsView

logger = logging.getLogger(__name__)

#: A last cycle older than this many polling intervals, in session, fails the check.
STALE_INTERVALS = 3
DEFAULT_POLLING_SECONDS = 60
#: (connect, read) seconds of the execution API check: a health check must answer quickly.
EXECUTION_API_TIMEOUT = (1.0, 2.0)
CACHE_KEY = "app:healthz"

#: The time the checks judge ages against; tests put the exchange in session by replacing it.
clock: Callable[[], datetime] = timezone.now


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return Check(False, f"database unreachable: {type(exc).__name__}")
    return Check(True, connection.vendor)


def check_cache() -> Check:
    token = secrets.token_hex(8)
    try:
        cache.set(CACHE_KEY, token, timeout=10)
        if cache.get(CACHE_KEY) != token:
            return Check(False, "a value written to the cache was not read back")
    except Exception as exc:
        return Check(False, f"cache unreachable: {type(exc).__name__}")
    return Check(True, "read back")


def check_task_queue() -> Check:
    try:
        clusters = Stat.get_all()
    except Exception as exc:
        return Check(False, f"cluster status unreadable: {type(exc).__name__}")
    if not clusters:
        return Check(False, "no task cluster heartbeat: no cycle, order or loop will run")
    return Check(True, f"{len(clusters)} cluster(s) running")


def check_execution_api() -> Check:
    """One ``GET /v2/account`` against ``EXECUTION_API_URL`` with a short timeout."""
    if not settings.EXECUTION_API_URL:
        return Check(False, "EXECUTION_API_URL is not set")
    try:
        adapter = AlpacaHttpAdapter(
            settings.EXECUTION_API_URL,
            settings.EXECUTION_API_KEY_ID,
            settings.EXECUTION_API_SECRET_KEY,
            timeout=EXECUTION_API_TIMEOUT,
        )
        adapter.account()
    except BrokerUnavailable as exc:
        return Check(False, f"execution API unavailable: {exc}")
    except ValueError as exc:
        return Check(False, f"execution API misconfigured: {exc}")
    return Check(True, "account read")


def pools_with_last_cycle() -> list[dict]:
    """Every pool with its adapter, polling interval and last decision cycle. One query."""
    last = LoopRun.objects.filter(pool=OuterRef("pk"), loop=DECISION_CYCLE).values(
        "last_finished_at"
    )[:1]
    return list(
        Pool.objects.order_by("name").values(
            "name",
            "adapter",
            "created_at",
            "engine_config__polling_interval_seconds",
            last_cycle=Subquery(last),
        )
    )


def check_cycle(pool: dict, now: datetime, in_session: bool) -> Check:
    """Whether the pool's decision cycle runs: its last one no older than ``STALE_INTERVALS``
    polling intervals while the exchange is open. Ages in seconds."""
    interval = pool["engine_config__polling_interval_seconds"] or DEFAULT_POLLING_SECONDS
    limit = STALE_INTERVALS * interval
    last = pool["last_cycle"]
    since = last or pool["created_at"]
    age = max(0, int((now - since).total_seconds()))
    seen = f"last cycle {age} s ago" if last else f"no cycle yet, created {age} s ago"
    if not in_session:
        return Check(True, f"exchange closed; {seen}")
    if age > limit:
        return Check(False, f"{seen}: older than {limit} s ({STALE_INTERVALS} × {interval} s)")
    return Check(True, f"{seen} (limit {limit} s)")


def run_checks(now: datetime) -> dict[str, Check]:
    """Every part's check as of ``now``; see the module docstring."""
    checks = {
        "database": check_database(),
        "cache": check_cache(),
        "task_queue": check_task_queue(),
    }
    try:
        pools = pools_with_last_cycle()
    except Exception as exc:
        checks["pools"] = Check(False, f"pools unreadable: {type(exc).__name__}")
        return checks
    try:
        in_session = get_market_calendar(now).is_open(now)
    except ValueError as exc:
        checks["market_calendar"] = Check(False, str(exc))
        in_session = False
    execution_api: Check | None = None
    for pool in pools:
        if pool["adapter"] == AdapterKind.HTTP:
            execution_api = execution_api or check_execution_api()
            checks[f"execution_api:{pool['name']}"] = execution_api
        checks[f"cycle:{pool['name']}"] = check_cycle(pool, now, in_session)
    return checks


# --- the view ---------------------------------------------------------------------------------


class CheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    detail = serializers.CharField()


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "failing"])
    checks = serializers.DictField(
        child=CheckSerializer(), help_text="Part → its check; failing parts have ok false"
    )


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]

    @extend_schema(
        summary="Health of the engine's parts: database, cache, task queue, execution API, "
        "decision cycles",
        auth=[],
        responses={
            200: OpenApiResponse(HealthSerializer, description="Every part is up"),
            503: OpenApiResponse(HealthSerializer, description="The failing parts are named"),
        },
        tags=["operations"],
    )
    def get(self, request):
        checks = run_checks(clock())
        failing = sorted(name for name, check in checks.items() if not check.ok)
        if failing:
            logger.warning("health check failing: %s", ", ".join(failing))
        body = {
            "status": "failing" if failing else "ok",
            "checks": {name: {"ok": c.ok, "detail": c.detail} for name, c in checks.items()},
        }
        return Response(body, status=503 if failing else 200)


urlpatterns = [
    path("healthz", HealthView.as_view(), name="healthz"),
    path("metrics", MetricsView.as_view(), name="metrics"),
]
