"""``/metrics``: the engine in the Prometheus text format, read from the database at scrape time.

Web workers and task clusters on several machines decide and execute, so nothing is counted in
a process's memory: a custom collector (``EngineCollector``) reads, at each scrape, the read
model of each pool (``execution.selectors.pool_as_of``), the open orders, and the counters and
histogram buckets the engine adds to in its own transactions (``portfolio.telemetry``,
``portfolio.heartbeat``). Labels stay few: pool, outcome, reason, status, type, loop; never an
id.

Readable with a viewer or operator token (or session), or without credentials from an address
in ``METRICS_ALLOWED_IPS`` (an address or a network, ``10.0.0.0/8``; the peer address
``REMOTE_ADDR`` only, never a forwarded header). Anonymous from elsewhere: 401; signed in
without either role: 403.

Queries: the pools (one), ``pool_as_of`` per pool (a fixed handful each), and one each for the
orders, the counters (decisions and histogram buckets), the loop heartbeats and the open
reconciliation events.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from execution.models import Order, OrderStatus
from execution.selectors import pool_as_of
from portfolio.models import (
    BreakerType,
    LoopRun,
    Pool,
    ReconciliationEvent,
    ReconciliationStatus,
    TelemetryCounter,
)
from portfolio.telemetry import (
    BUCKETS,
    CYCLE_DURATION,
    DECISIONS,
    INF,
    ORDER_LATENCY,
    bucket_label,
)
from project.api.roles import can_operate, can_read_all

logger = logging.getLogger(__name__)

#: Orders not settled yet: the ones an operator watches (``unknown`` needs reconciling).
OPEN_ORDER_STATUSES = (
    OrderStatus.QUEUED,
    OrderStatus.SUBMITTING,
    OrderStatus.ACCEPTED,
    OrderStatus.PARTIALLY_FILLED,
    OrderStatus.UNKNOWN,
)
#: An order ``submitting`` longer than this is stuck (its worker died before the answer).
STUCK_SUBMITTING = timedelta(minutes=2)
HISTOGRAMS = {
    CYCLE_DURATION: (
        "engine_cycle_duration_seconds",
        "Wall-clock duration of decision cycles, in seconds",
    ),
    ORDER_LATENCY: (
        "engine_recommendation_to_order_seconds",
        "Seconds from a recommendation's arrival to the broker accepting or filling its order",
    ),
}


def _f(value: Decimal | int | float) -> float:
    return float(value)


class EngineCollector:
    """A prometheus_client collector over the database, as of ``now``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def collect(self) -> Iterator[Metric]:
        pools = list(Pool.objects.select_related("engine_config").order_by("name"))
        yield from self._pool_metrics(pools)
        yield from self._order_metrics(pools)
        counters = list(
            TelemetryCounter.objects.order_by(
                "pool__name", "metric", "outcome", "reason"
            ).values_list("pool__name", "metric", "outcome", "reason", "le", "total", "sum_seconds")
        )
        yield self._decision_counter(counters)
        yield from self._histograms(counters)
        yield self._loop_runs()
        yield self._reconciliation_events(pools)

    def _pool_metrics(self, pools: list[Pool]) -> Iterator[Metric]:
        def gauge(name: str, documentation: str, labels=("pool",)) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, documentation, labels=list(labels))

        value = gauge("engine_pool_value_dollars", "Total value of the pool, reserve included")
        active = gauge("engine_pool_active_dollars", "Active pool: total value minus reserve")
        reserve = gauge("engine_pool_reserve_dollars", "Reserve balance")
        exposure = gauge("engine_pool_exposure_dollars", "Pool exposure (heat) of commitments")
        cap = gauge("engine_pool_exposure_cap_dollars", "The tier's exposure cap in dollars")
        gain = gauge("engine_pool_daily_gain_dollars", "Gain since the previous close")
        loss = gauge("engine_pool_daily_loss_ratio", "Loss today as a fraction of the total value")
        limit = gauge(
            "engine_pool_daily_loss_limit_ratio", "Daily loss limit (daily_loss_pct, fraction)"
        )
        commitments = gauge("engine_pool_open_commitments", "Open commitments")
        halted = gauge("engine_pool_halted", "1 while an operator's halt is in force")
        breakers = gauge(
            "engine_breakers_in_force",
            "Circuit breakers in force by type (entity cooldowns included)",
            labels=("pool", "type"),
        )
        for pool in pools:
            try:
                config = getattr(pool, "engine_config", None)
                state = pool_as_of(pool, self.now, config=config)
            except Exception:  # one unreadable pool must not hide the others
                logger.exception("metrics: could not read pool %s", pool.name)
                continue
            labels = [pool.name]
            value.add_metric(labels, _f(state.total_value))
            active.add_metric(labels, _f(state.active_pool))
            reserve.add_metric(labels, _f(state.reserve_balance))
            exposure.add_metric(labels, _f(state.pool_exposure))
            cap.add_metric(labels, _f(state.exposure_cap))
            gain.add_metric(labels, _f(state.daily_gain))
            ratio = (
                -state.daily_gain / state.total_value
                if state.total_value > 0 and state.daily_gain < 0
                else Decimal("0")
            )
            loss.add_metric(labels, _f(ratio))
            if config is not None:
                limit.add_metric(labels, _f(config.daily_loss_pct))
            commitments.add_metric(labels, len(state.positions))
            halted.add_metric(labels, int(state.halted))
            by_type = defaultdict(int)
            for event in state.breakers.events:
                by_type[str(event.type)] += 1
            for kind in BreakerType.values:
                breakers.add_metric([pool.name, kind], by_type.get(kind, 0))
        yield from (value, active, reserve, exposure, cap, gain, loss, limit)
        yield from (commitments, halted, breakers)

    def _order_metrics(self, pools: list[Pool]) -> Iterator[Metric]:
        names = {pool.pk: pool.name for pool in pools}
        stuck_before = self.now - STUCK_SUBMITTING
        rows = (
            Order.objects.filter(status__in=OPEN_ORDER_STATUSES)
            .values("pool_id", "status")
            .annotate(
                n=Count("id"),
                stuck=Count(
                    "id",
                    filter=Q(status=OrderStatus.SUBMITTING, submitted_at__lte=stuck_before),
                ),
            )
        )
        counts: dict[tuple[int, str], int] = {}
        stuck: dict[int, int] = defaultdict(int)
        for row in rows:
            counts[(row["pool_id"], row["status"])] = row["n"]
            stuck[row["pool_id"]] += row["stuck"]
        orders = GaugeMetricFamily(
            "engine_orders",
            "Orders not settled yet, by status (unknown: reconcile)",
            labels=["pool", "status"],
        )
        stuck_gauge = GaugeMetricFamily(
            "engine_orders_stuck_submitting",
            f"Orders submitting for more than {int(STUCK_SUBMITTING.total_seconds())} s",
            labels=["pool"],
        )
        for pool_id, name in names.items():
            for status in OPEN_ORDER_STATUSES:
                orders.add_metric([name, str(status)], counts.get((pool_id, status), 0))
            stuck_gauge.add_metric([name], stuck.get(pool_id, 0))
        yield orders
        yield stuck_gauge

    def _decision_counter(self, counters: list[tuple]) -> Metric:
        counter = CounterMetricFamily(
            "engine_decisions",
            "Evaluations of recommendations by outcome and skip reason (a repeated skip "
            "counts each time)",
            labels=["pool", "outcome", "reason"],
        )
        for pool, metric, outcome, reason, _, total, _ in counters:
            if metric == DECISIONS:
                counter.add_metric([pool, outcome, reason], total)
        return counter

    def _histograms(self, counters: list[tuple]) -> Iterator[Metric]:
        series: dict[tuple[str, str], dict[str, tuple[int, float]]] = defaultdict(dict)
        for pool, metric, _, _, le, total, seconds in counters:
            if metric in HISTOGRAMS:
                series[(metric, pool)][le] = (total, seconds)
        for metric, (name, documentation) in HISTOGRAMS.items():
            family = HistogramMetricFamily(name, documentation, labels=["pool"])
            for (stored_metric, pool), buckets in sorted(series.items()):
                if stored_metric != metric or INF not in buckets:
                    continue
                count, total = buckets[INF]
                family.add_metric(
                    [pool],
                    buckets=[
                        (bucket_label(b), buckets.get(bucket_label(b), (0, 0.0))[0])
                        for b in BUCKETS[metric]
                    ]
                    + [(INF, count)],
                    sum_value=total,
                )
            yield family

    def _loop_runs(self) -> Metric:
        gauge = GaugeMetricFamily(
            "engine_loop_last_finished_timestamp_seconds",
            "When each loop of each pool last finished (Unix time)",
            labels=["pool", "loop"],
        )
        for pool, loop, finished in LoopRun.objects.order_by("pool__name", "loop").values_list(
            "pool__name", "loop", "last_finished_at"
        ):
            gauge.add_metric([pool, loop], finished.timestamp())
        return gauge

    def _reconciliation_events(self, pools: list[Pool]) -> Metric:
        """Open reconciliation events per pool (``execution.reconciliation``): each holds its
        entity reduce-only until an operator acknowledges it. One query."""
        gauge = GaugeMetricFamily(
            "engine_reconciliation_open_events",
            "Differences between the books and the broker not yet acknowledged by an operator",
            labels=["pool"],
        )
        counts = dict(
            ReconciliationEvent.objects.filter(status=ReconciliationStatus.OPEN)
            .order_by()
            .values("pool_id")
            .annotate(n=Count("id"))
            .values_list("pool_id", "n")
        )
        for pool in pools:
            gauge.add_metric([pool.name], counts.get(pool.pk, 0))
        return gauge


def render_metrics(now: datetime) -> bytes:
    """The exposition text of every engine metric as of ``now``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(now))
    return generate_latest(registry)


# --- the view ---------------------------------------------------------------------------------


def client_allowed(address: str | None) -> bool:
    """Whether the peer ``address`` is in ``METRICS_ALLOWED_IPS`` (addresses or networks)."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in settings.METRICS_ALLOWED_IPS:
        try:
            if ip in ipaddress.ip_network(entry.strip(), strict=False):
                return True
        except ValueError:
            logger.warning("METRICS_ALLOWED_IPS: %r is not an address or network", entry)
    return False


class MetricsAccess(BasePermission):
    """The viewer or operator role, or an allowed peer address."""

    message = "The viewer or operator role, or an allowed address, is needed for the metrics."

    def has_permission(self, request, view) -> bool:
        if request.method not in SAFE_METHODS:
            # Nothing here is written: a viewer's write is refused like every viewer's write
            # (403), an operator learns the method does not exist (405).
            return can_operate(request.user)
        return can_read_all(request.user) or client_allowed(request.META.get("REMOTE_ADDR"))


class MetricsErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = serializers.DictField()


class MetricsView(APIView):
    permission_classes = [MetricsAccess]
    renderer_classes = [JSONRenderer]

    @extend_schema(
        summary="Engine metrics in the Prometheus text format",
        responses={
            (200, "text/plain"): OpenApiResponse(
                OpenApiTypes.STR, description="Prometheus exposition text"
            ),
            401: OpenApiResponse(MetricsErrorSerializer, description="No or bad credentials"),
            403: OpenApiResponse(
                MetricsErrorSerializer, description="Neither a reader nor an allowed address"
            ),
        },
        tags=["operations"],
    )
    def get(self, request):
        return HttpResponse(render_metrics(timezone.now()), content_type=CONTENT_TYPE_LATEST)
