"""Benchmark ``latency``: a recommendation POSTed to the API → its order accepted at the broker.

The API (Django's WSGI handler on 127.0.0.1, ``bench_ingest.IngestServer``), one real
``manage.py qcluster`` with the engine's schedules (PostgreSQL, Redis) and the test broker
(``tests/broker_server.py``) over HTTP. Recommendations are POSTed one at a time with an
``ingest`` service account's token (``manage.py create_service_account``); each one is timed
from the start of its POST to the moment the broker answered the POST of its order. Between
the two: the ingest's trigger queues a decision cycle on commit (``decisions.triggers``), the
cycle decides and queues the order, the order goes to a worker on commit, the worker claims,
evaluates, sends and books it.

The clock is not simulated: the decision cycle reads the wall clock and acts only inside a
regular NYSE session (outside one every recommendation is skipped with
``outside_execution_window``). The benchmark therefore refuses to start outside a session, or
too close to its close to finish inside it, and says when the next one opens.
"""

from __future__ import annotations

import io
import json
import random
import statistics
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.management import call_command
from django.db import close_old_connections, connections
from django.utils import timezone

from decisions.schedules import setup_schedules
from decisions.tooling.bench_ingest import URL_PATH, IngestServer
from decisions.tooling.cluster import (
    ClusterProcess,
    build_http_pool,
    cluster_env,
    flush_redis,
    require_postgres_and_redis,
)
from execution.keys import client_order_id_for
from execution.models import Order
from portfolio.market_calendar import get_market_calendar
from portfolio.models import EngineConfig

ORDERS_PATH = "/v2/orders"


@dataclass(frozen=True)
class LatencySpec:
    n: int = 50
    workers: int = 2
    wait_each: float = 30.0
    seed: int = 13

    @property
    def budget(self) -> timedelta:
        """A generous bound on the run: start-up, then ``wait_each`` per recommendation at
        worst would be too long to ask for; two seconds each plus two minutes is."""
        return timedelta(seconds=120 + 2 * self.n)


def session_refusal(now: datetime, spec: LatencySpec) -> str | None:
    """Why the benchmark cannot run at ``now`` (outside a session, or too close to its close
    to finish within ``spec.budget``), or None."""
    calendar = get_market_calendar(now)
    if calendar.is_open(now):
        close = calendar.session_close(calendar.current_session(now))
        if close - now >= spec.budget:
            return None
        return (
            f"bench latency needs {spec.budget.total_seconds():.0f} s inside a NYSE session and "
            f"this one closes at {close.isoformat()}; run it in the next session"
        )
    day = calendar.current_session(now)
    if calendar.session_open(day) <= now:
        day = calendar.next_session(day)
    return (
        "bench latency times the engine on the wall clock, and the decision cycle acts only "
        "inside a regular NYSE session (outside one it skips every recommendation with "
        f"outside_execution_window): now is {now.isoformat()}, the next session opens at "
        f"{calendar.session_open(day).isoformat()}"
    )


def _post(url: str, token: str, row: dict) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps([row]).encode(),
        method="POST",
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        return response.status


def _percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.99 = p99) of ``values``."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


def bench_latency(spec: LatencySpec, progress: Callable[[str], None]) -> dict:
    """p50 and p99, in seconds, from a recommendation's POST to the broker's answer to its
    order, over ``spec.n`` recommendations POSTed one at a time (goal: p50 ≤ 1 s, p99 ≤ 3 s)."""
    from tests.broker_server import FakeBroker

    require_postgres_and_redis()
    now = timezone.now()
    refusal = session_refusal(now, spec)
    if refusal:
        from decisions.tooling.cluster import BenchUnavailable

        raise BenchUnavailable(refusal)
    flush_redis()
    rng = random.Random(spec.seed)
    pool, prices = build_http_pool("latency", spec.n, now, rng)
    EngineConfig.objects.filter(pool=pool).update(
        max_active_commitments=spec.n + 10,
        absolute_commitment_cap=Decimal("5000"),
        correlation_reduce_threshold=Decimal("0.9"),
        correlation_reject_threshold=Decimal("1"),
    )
    setup_schedules()
    out = io.StringIO()
    call_command(
        "create_service_account", "bench-latency", role="ingest", stdout=out, stderr=io.StringIO()
    )
    token = out.getvalue().strip()
    broker = FakeBroker(prices, cash="1000000000000", rate_limit=None).start()
    cluster = None
    latencies: list[float] = []
    try:
        env = cluster_env(broker.url, broker.key_id, broker.secret_key, spec.workers)
        cluster = ClusterProcess("latency", env).start()
        progress(f"cluster running ({spec.workers} workers); {spec.n} recommendations")
        with IngestServer() as server:
            for n, symbol in enumerate(sorted(prices)):
                rec_id = f"latency-{n:04d}"
                row = {
                    "id": rec_id,
                    "entity": symbol,
                    "action": "act",
                    "mode": "simulation_eligible",
                    "confidence": "0.9",
                    "generated_at": (timezone.now() - timedelta(seconds=30)).isoformat(),
                    "thesis": "benchmark",
                    "risk_classification": "medium",
                }
                started = timezone.now()
                status = _post(server.url + URL_PATH, token, row)
                if status != 201:
                    raise RuntimeError(f"ingest answered {status}")
                answered = _wait_answered(broker, rec_id, spec.wait_each)
                if answered is None:
                    close_old_connections()
                    statuses = list(
                        Order.objects.filter(recommendation_id=rec_id).values_list(
                            "status", flat=True
                        )
                    )
                    raise RuntimeError(
                        f"{rec_id}: no order answered by the broker after {spec.wait_each} s "
                        f"(orders: {statuses}); cluster log:\n{cluster.tail()}"
                    )
                latencies.append((answered - started).total_seconds())
                if (n + 1) % 10 == 0:
                    progress(
                        f"{n + 1}/{spec.n}: median so far {statistics.median(latencies):.3f} s"
                    )
    finally:
        if cluster is not None:
            cluster.stop()
        broker.stop()
        flush_redis()
        connections.close_all()
    return {
        "benchmark": "latency",
        "n": len(latencies),
        "p50_s": round(_percentile(latencies, 0.5), 3),
        "p99_s": round(_percentile(latencies, 0.99), 3),
        "max_s": round(max(latencies), 3),
        "workers": spec.workers,
    }


def _wait_answered(broker, rec_id: str, seconds: float) -> datetime | None:
    """When the broker answered the POST of ``rec_id``'s order, waiting at most ``seconds``."""
    deadline = time.monotonic() + seconds
    key = None
    while time.monotonic() < deadline:
        if key is None:
            close_old_connections()
            key = (
                Order.objects.filter(recommendation_id=rec_id)
                .values_list("idempotency_key", flat=True)
                .first()
            )
            sent_as = client_order_id_for(key) if key is not None else None
        if key is not None:
            for exchange in broker.exchanges:
                if (
                    exchange.client_order_id == sent_as
                    and exchange.method == "POST"
                    and exchange.path == ORDERS_PATH
                    and exchange.answered_at is not None
                ):
                    return exchange.answered_at
        time.sleep(0.01)
    return None
