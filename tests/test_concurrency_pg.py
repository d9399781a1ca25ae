"""Concurrency on PostgreSQL: row locks and SKIP LOCKED are what make these hold.

SQLite ignores ``select_for_update``; these tests are skipped there (see conftest.py).
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Count, Q

from decisions.engine import run_decision_cycle
from decisions.models import DecisionRecord, Recommendation
from decisions.tooling.benchmarks import daily_bar
from execution import tasks
from execution.keys import client_order_id_for
from execution.models import Order, OrderStatus, RiskEvaluation
from execution.worker import process_order, queued_order_ids
from portfolio.actions import create_pool
from portfolio.market_calendar import get_market_calendar
from portfolio.models import Commitment, EngineConfig, Entity, MarketSnapshot, PoolRiskConfig
from tests import factories
from tests.broker_server import FakeBroker

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("source_tiers"),
]


def _in_threads(target, args_list):
    """Run ``target`` once per args tuple, all released at the same instant."""
    barrier = threading.Barrier(len(args_list))
    errors: list[BaseException] = []
    results: list = [None] * len(args_list)

    def run(i, args):
        try:
            barrier.wait(timeout=10)
            results[i] = target(*args)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


def test_two_engines_produce_one_processed_decision_per_recommendation(session_now):
    pool = factories.make_pool(now=session_now)
    EngineConfig.objects.filter(pool=pool).update(max_active_commitments=100)
    recs = []
    for i in range(12):
        symbol = f"C{i:02d}"
        factories.add_bars(symbol, session_now, sector=f"S{i % 6}", start=20 + i)
        recs.append(factories.make_recommendation(symbol, session_now, confidence="0.80"))

    _in_threads(lambda: run_decision_cycle(pool.pk, session_now, dispatch=False), [(), (), ()])

    processed = DecisionRecord.objects.filter(pool=pool, processed=True)
    assert processed.count() == len(recs)
    assert sorted(processed.values_list("recommendation_id", flat=True)) == sorted(
        r.id for r in recs
    )
    # One order per act decision, never two.
    assert Order.objects.filter(pool=pool).count() == processed.filter(outcome="act").count()


def test_two_workers_on_one_order_fill_it_once(session_now):
    pool = factories.make_pool(now=session_now)
    factories.add_bars("W1", session_now)
    factories.make_recommendation("W1", session_now)
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    order = Order.objects.get(pool=pool)

    results = _in_threads(lambda: process_order(order.pk, session_now), [(), (), ()])

    assert sorted(str(r.status) for r in results).count("filled") == 1
    assert RiskEvaluation.objects.filter(order=order).count() == 1
    commitment = Commitment.objects.get(pool=pool)
    assert commitment.units == order.quantity
    pool.refresh_from_db()
    order.refresh_from_db()
    assert pool.cash == Decimal("100000") - order.quantity * order.fill_value


# --- two engines and four workers over 1,000 recommendations --------------------------------

RECOMMENDATIONS = 1000
ENTITIES = 200
SESSIONS = 31
PER_CYCLE = 200
#: Commitments a pool may hold (pending entries included): caps the act decisions, so that the
#: rest of the recommendations are processed as skips and the workers' share stays short.
ACTIVE_COMMITMENTS = 150
WORKERS = 4
#: Orders a worker takes per task (``execution.dispatch.ORDERS_PER_TASK``'s size).
BATCH = 50


def _market(now, rng) -> tuple[list[str], dict[str, Decimal]]:
    """``ENTITIES`` entities in ten sectors with ``SESSIONS`` daily bars each up to the last
    session before ``now``; returns the symbols and each one's last close (the broker's
    price)."""

    calendar = get_market_calendar(now)
    days = calendar.last_sessions(
        calendar.previous_session(calendar.current_session(now)), SESSIONS
    )
    symbols = [f"K{i:03d}" for i in range(ENTITIES)]
    Entity.objects.bulk_create(
        [Entity(symbol=s, name=s, sector=f"Sector {i % 10}") for i, s in enumerate(symbols)]
    )
    prices, bars = {}, []
    for symbol in symbols:
        value = 20 + 80 * rng.random()
        for day in days:
            value *= 1 + rng.gauss(0, 0.015)
            close = Decimal(str(round(value, 2)))
            bars.append(daily_bar(symbol, calendar.session_close(day), close))
        prices[symbol] = close
    MarketSnapshot.objects.bulk_create(bars, batch_size=5000)
    return symbols, prices


def _http_pool(name: str, now) -> int:
    """A pool on the HTTP adapter whose limits let every sized order through the gate."""

    pool = create_pool(
        name,
        mode="simulation",
        cash=Decimal("10000000"),
        tier="aggressive",
        adapter="http",
        now=now,
        actor="tests",
        reason="concurrency test pool",
    )
    EngineConfig.objects.filter(pool=pool).update(
        max_recommendations_per_cycle=PER_CYCLE,
        max_active_commitments=ACTIVE_COMMITMENTS,
        absolute_commitment_cap=Decimal("5000"),
        declining_commitments_share=Decimal("1"),
    )
    PoolRiskConfig.objects.filter(pool=pool).update(
        max_open_commitments=100_000,
        max_sector_pct=Decimal("1"),
        max_daily_loss_pct=Decimal("1"),
        max_order_notional=Decimal("100000000"),
        max_orders_per_minute=1_000_000,
    )
    return pool.pk


def _recommendations(symbols: list[str], now, rng) -> list[str]:

    rows = [
        Recommendation(
            id=f"conc-{i:04d}",
            entity_id=symbols[i % len(symbols)],
            action="act",
            mode="simulation_eligible",
            # Above every tier's minimum, so that no recommendation is left for a later cycle.
            confidence=Decimal(str(round(rng.uniform(0.8, 0.99), 4))),
            generated_at=now - timedelta(minutes=rng.randint(1, 60)),
            thesis="concurrency",
        )
        for i in range(RECOMMENDATIONS)
    ]
    Recommendation.objects.bulk_create(rows, batch_size=1000)
    return [row.id for row in rows]


def _engine(pool_ids: list[int], now) -> int:
    """One engine: cycles over its pools until none has a candidate left; the cycles run."""
    cycles = 0
    busy = set(pool_ids)
    while busy:
        for pool_id in pool_ids:
            if pool_id in busy:
                cycles += 1
                if not run_decision_cycle(pool_id, now, dispatch=False).candidates:
                    busy.discard(pool_id)
    return cycles


def _worker(index: int, engines_done: threading.Event) -> int:
    """One worker of the cluster: takes the queued orders in batches through the task entry
    point (``execution.tasks.process_orders``) until the engines are done and nothing is
    queued. Two workers take overlapping batches, so they race for the same rows."""
    handled = 0
    while True:
        done = engines_done.is_set()  # read before the queue: no order can come after it
        ids = queued_order_ids()
        if not ids:
            if done:
                return handled
            time.sleep(0.02)
            continue
        offset = (index % 2) * (BATCH // 2)
        batch = ids[offset : offset + BATCH] or ids[:BATCH]
        if index >= 2:
            batch.reverse()
        handled += len(tasks.process_orders(batch))


@pytest.fixture
def _fast_broker(settings):
    # No rate limit at the broker, and the desk's own limiter well above what the test sends.
    settings.EXECUTION_API_RATE_LIMIT = 1_000_000
    with FakeBroker(cash="1000000000", rate_limit=None) as broker:
        yield broker.configure(settings, timeout=10)


def test_two_engines_and_four_workers_over_a_thousand_recommendations(session_now, _fast_broker):
    broker = _fast_broker
    rng = random.Random(7)
    symbols, prices = _market(session_now, rng)
    for symbol, price in prices.items():
        broker.set_price(symbol, price)
    pools = [_http_pool("conc-a", session_now), _http_pool("conc-b", session_now)]
    recommendation_ids = _recommendations(symbols, session_now, rng)
    engines_done = threading.Event()
    barrier = threading.Barrier(2 + WORKERS)
    errors: list[str] = []
    counts: dict[str, int] = {}

    def run(name, target, *args):
        try:
            barrier.wait(timeout=30)
            counts[name] = target(*args)
        except BaseException:  # surfaced below, with where it was raised
            errors.append(traceback.format_exc())
        finally:
            connection.close()

    engines = [
        threading.Thread(target=run, args=(f"engine-{i}", _engine, order, session_now))
        for i, order in enumerate((pools, pools[::-1]))
    ]
    workers = [
        threading.Thread(target=run, args=(f"worker-{i}", _worker, i, engines_done))
        for i in range(WORKERS)
    ]
    for thread in engines + workers:
        thread.start()
    for thread in engines:
        thread.join(timeout=240)
    engines_done.set()
    for thread in workers:
        thread.join(timeout=240)
    assert not any(t.is_alive() for t in engines + workers), "a thread never finished"
    assert not errors, "\n".join(errors)

    # One processed decision per pool and recommendation, both engines having cycled both pools.
    for pool_id in pools:
        processed = DecisionRecord.objects.filter(pool_id=pool_id, processed=True)
        assert processed.count() == RECOMMENDATIONS
        assert set(processed.values_list("recommendation_id", flat=True)) == set(recommendation_ids)
    assert all(counts[f"engine-{i}"] >= 2 for i in range(2)), counts
    acts = DecisionRecord.objects.filter(pool_id__in=pools, processed=True, outcome="act")
    assert acts.count() >= 100, "too few act decisions to race for"
    # One order per act decision, each sent once, every one final.
    orders = list(
        Order.objects.filter(pool_id__in=pools).values("decision_id", "idempotency_key", "status")
    )
    assert sorted(o["decision_id"] for o in orders) == sorted(acts.values_list("id", flat=True))
    assert {o["status"] for o in orders} == {OrderStatus.FILLED}
    # Each claimed once: one passed risk evaluation and one attempt per order.
    assert set(Order.objects.filter(pool_id__in=pools).values_list("attempts", flat=True)) == {1}
    evaluations = list(
        RiskEvaluation.objects.filter(pool_id__in=pools)
        .values("order_id")
        .annotate(n=Count("id"), passed=Count("id", filter=Q(passed=True)))
        .order_by()
    )
    assert len(evaluations) == len(orders)
    assert {(row["n"], row["passed"]) for row in evaluations} == {(1, 1)}
    # One broker order per act decision: each client order id executed once, nothing else.
    client_ids = {client_order_id_for(o["idempotency_key"]) for o in orders}
    assert len(client_ids) == len(orders)
    executions = broker.executions()
    assert set(executions) == client_ids
    assert set(executions.values()) == {1}
    assert sum(executions.values()) == acts.count()
    posts = [r.body["client_order_id"] for r in broker.received if r.method == "POST"]
    assert sorted(posts) == sorted(client_ids), "an order was sent twice"
