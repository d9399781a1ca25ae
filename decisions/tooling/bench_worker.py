"""Benchmark ``worker``: orders per second through the worker to the test broker, beside the
rate of bare django-q2 no-op tasks on the same cluster in the same run.

One real ``manage.py qcluster`` (PostgreSQL, Redis) trades with the test broker
(``tests/broker_server.py``) over HTTP. First ``noops`` tasks of ``noop_task`` are queued at
once and timed from the first enqueue to the last task's stop time as django-q2 records it;
then ``orders`` queued orders are written in one transaction and handed out on commit
(``execution.dispatch.enqueue_orders``, the engine's own path), timed from the commit to the
last order's final answer stored. Each order is claimed, evaluated by the execution gate, sent
and booked, exactly as in production.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.db import close_old_connections, connections, transaction
from django.db.models import Max
from django.utils import timezone
from django_q.models import Task
from django_q.tasks import async_task

from decisions.tooling.cluster import (
    ClusterProcess,
    build_http_pool,
    cluster_env,
    flush_redis,
    require_postgres_and_redis,
)
from execution.dispatch import enqueue_orders, queued_order
from execution.models import Order, OrderStatus

NOOP_TASK = "decisions.tooling.bench_worker.noop_task"
NOOP_GROUP = "bench-noop"


def noop_task() -> None:
    """Does nothing: the cost of a task through django-q2 alone."""


@dataclass(frozen=True)
class WorkerSpec:
    orders: int = 300
    noops: int = 300
    symbols: int = 50
    workers: int = 2
    timeout: float = 300.0
    seed: int = 9


def _wait(count: Callable[[], int], target: int, timeout: float, what: str, progress) -> None:
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while (done := count()) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: {done} of {target} done after {timeout:.0f} s")
        if time.monotonic() - last >= 10:
            progress(f"  {what}: {done}/{target}")
            last = time.monotonic()
        time.sleep(0.05)
        close_old_connections()


def bench_worker(spec: WorkerSpec, progress: Callable[[str], None]) -> dict:
    """``orders_per_s`` through the worker to the test broker and ``noop_tasks_per_s`` of bare
    django-q2 tasks on one cluster of ``spec.workers`` workers; ``ratio`` is the first over
    the second (goal: ≥ 0.5)."""
    from tests.broker_server import FakeBroker

    require_postgres_and_redis()
    flush_redis()
    rng = random.Random(spec.seed)
    pool, prices = build_http_pool("worker", spec.symbols, timezone.now(), rng)
    symbols = sorted(prices)
    broker = FakeBroker(prices, cash="1000000000000").start()
    cluster = None
    try:
        env = cluster_env(broker.url, broker.key_id, broker.secret_key, spec.workers)
        cluster = ClusterProcess("worker", env).start()
        progress(f"cluster running ({spec.workers} workers); {spec.noops} no-op tasks")

        start = timezone.now()
        for n in range(spec.noops):
            async_task(NOOP_TASK, group=NOOP_GROUP, task_name=f"noop-{n}")
        _wait(
            lambda: Task.objects.filter(group=NOOP_GROUP).count(),
            spec.noops,
            spec.timeout,
            "no-op tasks",
            progress,
        )
        end = Task.objects.filter(group=NOOP_GROUP).aggregate(end=Max("stopped"))["end"]
        noop_s = (end - start).total_seconds()
        progress(f"{spec.noops} no-op tasks in {noop_s:.2f} s")

        progress(f"{spec.orders} orders")
        now = timezone.now()
        with transaction.atomic():
            orders = Order.objects.bulk_create(
                [
                    queued_order(
                        pool=pool,
                        entity_id=symbols[n % len(symbols)],
                        action="act",
                        side="buy",
                        reason="entry",
                        quantity=Decimal(1 + n % 3),
                        estimated_value=prices[symbols[n % len(symbols)]],
                        reference=f"worker:{n}",
                        now=now,
                    )
                    for n in range(spec.orders)
                ]
            )
            ids = [order.pk for order in orders]
            committed = []
            transaction.on_commit(lambda: (committed.append(timezone.now()), enqueue_orders(ids)))
        start = committed[0]
        finals = (OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.RISK_REJECTED)
        done = Order.objects.filter(pool=pool, status__in=finals)
        _wait(done.count, spec.orders, spec.timeout, "orders", progress)
        end = done.aggregate(end=Max("updated_at"))["end"]
        orders_s = (end - start).total_seconds()
        filled = Order.objects.filter(pool=pool, status=OrderStatus.FILLED).count()
        if filled != spec.orders or len(broker.orders) != spec.orders:
            raise RuntimeError(
                f"{filled} orders filled, {len(broker.orders)} at the broker, of {spec.orders}"
            )
        progress(f"{spec.orders} orders filled at the broker in {orders_s:.2f} s")
    finally:
        if cluster is not None:
            cluster.stop()
        broker.stop()
        flush_redis()
        connections.close_all()
    orders_per_s = spec.orders / orders_s
    noop_per_s = spec.noops / noop_s
    return {
        "benchmark": "worker",
        "orders": spec.orders,
        "noops": spec.noops,
        "workers": spec.workers,
        "orders_per_s": round(orders_per_s, 1),
        "noop_tasks_per_s": round(noop_per_s, 1),
        "ratio": round(orders_per_s / noop_per_s, 2),
        "orders_s": round(orders_s, 3),
        "noops_s": round(noop_s, 3),
    }
