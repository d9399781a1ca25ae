"""Benchmarks: build their own data, time the real code paths, return figures.

Run through ``manage.py bench``, which creates a throwaway test database so nothing touches
the configured one. Figures are wall-clock seconds on this machine: they are for comparison
between runs and against the baseline measured in the same run, not absolute truths.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction

from decisions.engine import run_decision_cycle
from decisions.models import DecisionRecord, Recommendation
from portfolio.actions import create_pool
from portfolio.market_calendar import get_market_calendar
from portfolio.models import (
    Commitment,
    EngineConfig,
    Entity,
    MarketSnapshot,
    Pool,
    PoolRiskConfig,
)
from project.bulk import bulk_insert


@dataclass(frozen=True)
class DecisionCycleSpec:
    recommendations: int = 5000
    entities: int = 500
    commitments: int = 200
    sectors: int = 10
    sessions: int = 45
    repeat: int = 3
    seed: int = 11
    now: datetime = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)  # a Wednesday, 11:00 ET


def daily_bar(symbol: str, as_of, close: Decimal) -> MarketSnapshot:
    """A synthetic daily bar of the benchmarks: opens at its close, a 1 % range either side."""
    return MarketSnapshot(
        entity_id=symbol,
        as_of=as_of,
        open=close,
        high=close * Decimal("1.01"),
        low=close * Decimal("0.99"),
        close=close,
        volume=10_000,
    )


class QueryCounter:
    """Counts the queries sent through a connection (``connection.execute_wrapper``)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def _build_market(spec: DecisionCycleSpec, rng: random.Random) -> list[str]:
    calendar = get_market_calendar(spec.now)
    last = calendar.previous_session(calendar.current_session(spec.now))
    days = calendar.last_sessions(last, spec.sessions)
    symbols = [f"B{i:04d}" for i in range(spec.entities)]
    Entity.objects.bulk_create(
        [
            Entity(symbol=s, name=f"Bench {s}", sector=f"Sector {i % spec.sectors}")
            for i, s in enumerate(symbols)
        ]
    )
    factors = [[rng.gauss(0, 0.01) for _ in days] for _ in range(spec.sectors)]
    bars = []
    for i, symbol in enumerate(symbols):
        value = 20 + 60 * rng.random()
        for j, day in enumerate(days):
            value *= math.exp(factors[i % spec.sectors][j] + rng.gauss(0, 0.015))
            close = Decimal(str(round(value, 4)))
            bars.append(daily_bar(symbol, calendar.session_close(day), close))
    MarketSnapshot.objects.bulk_create(bars, batch_size=5000)
    return symbols


def _build_recommendations(spec: DecisionCycleSpec, symbols: list[str], rng: random.Random):
    Recommendation.objects.bulk_create(
        [
            Recommendation(
                id=f"bench-{i:06d}",
                entity_id=rng.choice(symbols),
                action="act" if rng.random() < 0.9 else "defer",
                mode="simulation_eligible",
                confidence=Decimal(str(round(rng.uniform(0.45, 0.99), 4))),
                generated_at=spec.now - timedelta(minutes=rng.randint(1, 110)),
                thesis="benchmark",
            )
            for i in range(spec.recommendations)
        ],
        batch_size=2000,
    )


def _build_pool(spec: DecisionCycleSpec, symbols: list[str], index: int) -> Pool:
    """A pool with limits raised so most candidates reach the sizer."""
    pool = create_pool(
        f"bench-{index}",
        mode="simulation",
        cash=Decimal("100000000"),
        tier="aggressive",
        now=spec.now,
        actor="bench",
        reason="benchmark pool",
    )
    EngineConfig.objects.filter(pool=pool).update(
        max_recommendations_per_cycle=spec.recommendations,
        max_active_commitments=spec.recommendations + spec.commitments,
        absolute_commitment_cap=Decimal("1000000"),
        declining_commitments_share=Decimal("1"),
    )
    PoolRiskConfig.objects.filter(pool=pool).update(max_open_commitments=100_000)
    held = symbols[: spec.commitments]
    Commitment.objects.bulk_create(
        [
            Commitment(
                pool=pool,
                entity_id=symbol,
                units=Decimal("100"),
                entry_value=Decimal("40"),
                entry_cost=Decimal("4000"),
                risk_tier="aggressive",
                risk_threshold=Decimal("36"),
                gain_target=Decimal("45"),
                opened_at=spec.now - timedelta(days=3),
            )
            for symbol in held
        ]
    )
    return pool


def _clone(row: DecisionRecord, pool: Pool) -> DecisionRecord:
    clone = DecisionRecord(
        **{f.attname: getattr(row, f.attname) for f in row._meta.concrete_fields}
    )
    clone.pk = None
    clone.pool = pool
    return clone


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_decision_cycle(spec: DecisionCycleSpec, progress: Callable[[str], None]) -> dict:
    """Time one decision cycle over ``spec.recommendations`` candidates against the time of
    bulk-inserting the same number of DecisionRecord rows (with the same traces) alone."""
    rng = random.Random(spec.seed)
    progress(f"building {spec.entities} entities × {spec.sessions} sessions of bars")
    symbols = _build_market(spec, rng)
    progress(f"building {spec.recommendations} recommendations")
    _build_recommendations(spec, symbols, rng)
    cycle_times, insert_times, copy_times, query_counts, decisions = [], [], [], [], 0
    for run in range(spec.repeat):
        pool = _build_pool(spec, symbols, run)
        counter = QueryCounter()
        with connection.execute_wrapper(counter):
            elapsed, result = _timed(
                lambda pool=pool: run_decision_cycle(pool.pk, spec.now, dispatch=False)
            )
        cycle_times.append(elapsed)
        query_counts.append(counter.count)
        decisions = result.new_records
        progress(
            f"run {run + 1}: cycle {elapsed:.3f} s, {counter.count} queries, "
            f"{decisions} decisions {dict(result.outcomes)}"
        )
        # Baseline: the same rows, traces included, inserted alone into a fresh pool.
        twin = _build_pool(spec, symbols, 100 + run)
        rows = list(DecisionRecord.objects.filter(pool=pool).order_by("id"))
        for row in rows:
            row.pk = None
            row.pool = twin
        copies = [_clone(row, _build_pool(spec, symbols, 200 + run)) for row in rows[:1]]
        copy_pool = copies[0].pool
        copies = [_clone(row, copy_pool) for row in rows]
        with transaction.atomic():
            elapsed, _ = _timed(lambda rows=rows: DecisionRecord.objects.bulk_create(rows, 1000))
        insert_times.append(elapsed)
        # The same rows through the cycle's own insert path (COPY on PostgreSQL).
        with transaction.atomic():
            fast, _ = _timed(lambda copies=copies: bulk_insert(DecisionRecord, copies))
        copy_times.append(fast)
        progress(
            f"run {run + 1}: {len(rows)} records: bulk_create {elapsed:.3f} s, "
            f"bulk_insert {fast:.3f} s"
        )
    cycle_s = statistics.median(cycle_times)
    insert_s = statistics.median(insert_times)
    return {
        "benchmark": "decision_cycle",
        "database": connection.vendor,
        "recommendations": spec.recommendations,
        "entities": spec.entities,
        "commitments": spec.commitments,
        "decisions": decisions,
        "cycle_s": round(cycle_s, 4),
        "bulk_insert_s": round(insert_s, 4),
        "ratio": round(cycle_s / insert_s, 2) if insert_s else None,
        "engine_insert_s": round(statistics.median(copy_times), 4),
        "ratio_vs_engine_insert": round(cycle_s / statistics.median(copy_times), 2),
        "queries": statistics.median(query_counts),
        "runs": spec.repeat,
        "cycle_runs_s": [round(t, 4) for t in cycle_times],
    }


@dataclass(frozen=True)
class AuditAdminSpec:
    rows: int = 1_000_000
    repeat: int = 3
    now: datetime = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)


ADMIN_PAGES = {
    "changelist": "/admin/decisions/decisionrecord/",
    "page_150": "/admin/decisions/decisionrecord/?p=150",
    "filtered": (
        "/admin/decisions/decisionrecord/?outcome__exact=skip"
        "&skip_reason__exact=outside_execution_window"
    ),
    "search": "/admin/decisions/decisionrecord/?q=A07",
    "detail": "/admin/decisions/decisionrecord/{pk}/change/",
}


def bench_audit_admin(spec: AuditAdminSpec, progress: Callable[[str], None]) -> dict:
    """Time the decision admin pages over ``spec.rows`` decision records (best of
    ``spec.repeat`` requests each), the audit volume of a busy desk."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    pool = create_pool(
        "audit",
        mode="simulation",
        cash=Decimal("100000"),
        now=spec.now,
        actor="bench",
        reason="benchmark pool",
    )
    symbols = [f"A{i:02d}" for i in range(50)]
    Entity.objects.bulk_create(
        [Entity(symbol=s, sector=f"Sector {i % 5}") for i, s in enumerate(symbols)]
    )
    recommendations = Recommendation.objects.bulk_create(
        [
            Recommendation(
                id=f"audit-{i:06d}",
                entity_id=symbols[i % 50],
                action="act",
                mode="simulation_eligible",
                confidence=Decimal("0.5"),
                generated_at=spec.now,
            )
            for i in range(spec.rows)
        ],
        batch_size=5000,
    )
    reasons = ["insufficient_confidence", "outside_execution_window", "max_commitments_reached"]
    trace = {"checks": [{"check": "confidence", "passed": False, "detail": "0.5 < 0.55"}] * 3}
    start = time.perf_counter()
    for offset in range(0, spec.rows, 10_000):
        bulk_insert(
            DecisionRecord,
            [
                DecisionRecord(
                    pool=pool,
                    recommendation_id=rec.id,
                    entity_id=rec.entity_id,
                    action="act",
                    outcome="skip",
                    skip_reason=reasons[n % 3],
                    confidence=rec.confidence,
                    risk_tier="moderate",
                    active_pool=Decimal("100000"),
                    reserve_balance=Decimal("0"),
                    decision_trace=trace,
                    evaluated_at=spec.now - timedelta(seconds=n),
                    last_evaluated_at=spec.now - timedelta(seconds=n),
                )
                for n, rec in enumerate(recommendations[offset : offset + 10_000], offset)
            ],
        )
        progress(f"{min(offset + 10_000, spec.rows):,} decision records")
    insert_s = time.perf_counter() - start
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE execution_decisions")
    get_user_model().objects.create_superuser("bench", "bench@localhost", "bench")
    client = Client(HTTP_HOST="127.0.0.1")  # a host ALLOWED_HOSTS accepts by default
    client.login(username="bench", password="bench")
    some = DecisionRecord.objects.order_by("-id").values_list("pk", flat=True).first()
    figures: dict = {
        "benchmark": "audit_admin",
        "database": connection.vendor,
        "rows": spec.rows,
        "insert_s": round(insert_s, 1),
    }
    for name, url in ADMIN_PAGES.items():
        best = None
        for _ in range(spec.repeat):
            elapsed, response = _timed(lambda url=url: client.get(url.format(pk=some)))
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}")
            best = elapsed if best is None else min(best, elapsed)
        figures[f"{name}_ms"] = round(best * 1000, 1)
        progress(f"{name}: {best * 1000:.0f} ms")
    return figures
