"""Benchmark ``worker``: orders per second through the worker to the test broker, beside the
rate of bare django-q2 no-op tasks on the same cluster in the same run.

One real ``manage.py qcluster`` (PostgreSQL, Redis) trades with the test broker
(``tests/broker_server.py``) over HTTP. First ``noops`` tasks of ``noop_task`` are queued at
once and timed from the first enqueue to the last task's stop time as django-q2 records it;
then a few warm-up orders go through, one task each (``WARMUP_ORDERS_PER_WORKER`` per
worker), so that each worker has loaded what a running cluster loaded long ago (the order
path's modules, the market calendar: about a second per worker process, once); then
``orders`` queued orders are written in one transaction and handed out on commit
(``execution.dispatch.enqueue_orders``, the engine's own path: batches of up to
``ORDERS_PER_TASK``), timed from the commit to the last order's final answer stored. Each
order is claimed, evaluated by the execution gate, sent and booked, exactly as in production.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
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
from execution.events import record_order_events
from execution.models import Order, OrderEventKind, OrderStatus

NOOP_TASK = "decisions.tooling.bench_worker.noop_task"
NOOP_GROUP = "bench-noop"
#: Orders sent through the cluster before the timed ones, one task each, per worker.
WARMUP_ORDERS_PER_WORKER = 3


def noop_task() -> None:
    """Does nothing: the cost of a task through django-q2 alone."""


@dataclass(frozen=True)
class WorkerSpec:
    orders: int = 300
    noops: int = 300
    #: ``None``: one entity per order. The engine never queues a second order for an entity
    #: while one is submitting or unknown (``order_unsettled``), and the worker's claim leaves
    #: such an order queued for the sweeper, which the bench's cluster does not run: orders
    #: sharing entities would time the sweeper, not the worker.
    symbols: int | None = None
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


def _write_orders(
    pool, prices: dict[str, Decimal], count: int, tag: str, first: int = 0
) -> tuple[list[int], datetime]:
    """``count`` queued buys written in one transaction as the engine writes them, handed
    out on commit (``enqueue_orders``), on the entities from the ``first``-th on; their ids and
    the time of the commit."""
    symbols = sorted(prices)
    now = timezone.now()
    with transaction.atomic():
        orders = Order.objects.bulk_create(
            [
                queued_order(
                    pool=pool,
                    entity_id=symbols[(first + n) % len(symbols)],
                    action="act",
                    side="buy",
                    reason="entry",
                    quantity=Decimal(1 + n % 3),
                    estimated_value=prices[symbols[(first + n) % len(symbols)]],
                    reference=f"{tag}:{n}",
                    now=now,
                )
                for n in range(count)
            ]
        )
        record_order_events(orders, OrderEventKind.QUEUED, now)
        ids = [order.pk for order in orders]
        committed = []
        transaction.on_commit(lambda: (committed.append(timezone.now()), enqueue_orders(ids)))
    return ids, committed[0]


def bench_worker(spec: WorkerSpec, progress: Callable[[str], None]) -> dict:
    """``orders_per_s`` through the worker to the test broker and ``noop_tasks_per_s`` of bare
    django-q2 tasks on one cluster of ``spec.workers`` workers; ``ratio`` is the first over
    the second (goal: ≥ 0.5)."""
    from tests.broker_server import FakeBroker

    require_postgres_and_redis()
    flush_redis()
    rng = random.Random(spec.seed)
    pool, prices = build_http_pool(
        "worker",
        spec.symbols or spec.orders + WARMUP_ORDERS_PER_WORKER * spec.workers,
        timezone.now(),
        rng,
    )
    broker = FakeBroker(prices, cash="1000000000000", rate_limit=None).start()
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

        # Warm-up: each worker's first orders load what a running cluster has loaded long
        # before (the order path's modules, the market calendar): not part of the rate.
        warmup = WARMUP_ORDERS_PER_WORKER * spec.workers
        progress(f"{warmup} warm-up orders")
        warm_ids = []
        for n in range(warmup):
            warm_ids += _write_orders(pool, prices, 1, f"warmup:{n}", first=n)[0]
        finals = (OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.RISK_REJECTED)
        _wait(
            Order.objects.filter(pk__in=warm_ids, status__in=finals).count,
            warmup,
            spec.timeout,
            "warm-up orders",
            progress,
        )

        progress(f"{spec.orders} orders")
        ids, start = _write_orders(pool, prices, spec.orders, "worker", first=warmup)
        # Polled 20 times a second beside the cluster: by the ids' range, one short query,
        # not an IN of every id (the throwaway database has no other orders in it).
        in_range = Order.objects.filter(pk__range=(min(ids), max(ids)))
        if in_range.count() != len(ids):
            raise RuntimeError("the throwaway database holds other orders in the bench's id range")
        done = in_range.filter(status__in=finals)
        _wait(done.count, spec.orders, spec.timeout, "orders", progress)
        end = done.aggregate(end=Max("updated_at"))["end"]
        orders_s = (end - start).total_seconds()
        filled = Order.objects.filter(pk__in=ids, status=OrderStatus.FILLED).count()
        at_broker = len(broker.orders) - warmup
        if filled != spec.orders or at_broker != spec.orders:
            raise RuntimeError(
                f"{filled} orders filled, {at_broker} at the broker, of {spec.orders}"
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
        "warmup_orders": WARMUP_ORDERS_PER_WORKER * spec.workers,
        "orders_per_s": round(orders_per_s, 1),
        "noop_tasks_per_s": round(noop_per_s, 1),
        "ratio": round(orders_per_s / noop_per_s, 2),
        "orders_s": round(orders_s, 3),
        "noops_s": round(noop_s, 3),
    }
