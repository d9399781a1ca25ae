"""Benchmark ``chaos``: two real clusters, SIGKILLed at chosen moments, then broker and books
compared.

Two ``manage.py qcluster`` processes (PostgreSQL, Redis) trade with the test broker
(``tests/broker_server.py``) over HTTP, each through its own listener, so every request the
broker receives is known to come from one cluster incarnation. Queued orders are written as
the engine writes them (``execution.dispatch.queued_order``, handed out by ``enqueue_orders``
on commit) at a steady rate; meanwhile one cluster at a time is killed with SIGKILL (its whole
process group) and started again. Each kill is aimed at one stage of an order's path, in turn:

- ``before_claim``: the pool row is locked from here, so the workers' claims wait on it with
  their tasks taken from Redis; the cluster dies before any claim commits;
- ``between_claim_and_post``: the cluster's listener stops accepting, so a claimed order's
  POST waits unread in the kernel's backlog (a task opens its own connection: one already
  open is served on); the cluster dies and the listener is closed, dropping the POST unread;
- ``during_post``: the broker holds the cluster's POST until the cluster is dead, then
  executes it and answers no one;
- ``after_answer``: the pool row is locked from here while the broker executes and answers
  the POST, so the worker waits to store the answer; the cluster dies there.

Then the engine's own schedules (whatever ``setup_schedules`` installs: the order recovery
that settles expired leases and hands out orders left queued, the reconciliation) settle what
the dead clusters left, and the broker's orders and positions are compared with the books.
An order a killed cluster held is one that was not settled at the kill and still not
``HELD_AFTER_S`` later (the surviving cluster settles its own within a second), plus the order
the kill was aimed at. A kill whose stage is not reached within ``STAGE_WAIT_S`` lands where
it falls and is counted as ``random``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import close_old_connections, connections, transaction
from django.utils import timezone

from decisions.schedules import setup_schedules
from decisions.tooling.cluster import (
    ClusterProcess,
    build_http_pool,
    cluster_env,
    flush_redis,
    require_postgres_and_redis,
)
from execution.dispatch import enqueue_orders, queued_order
from execution.events import record_order_events
from execution.keys import client_order_id_for, idempotency_key_prefix
from execution.models import Order, OrderEventKind, OrderStatus
from portfolio.models import Commitment, CommitmentStatus, Pool

STAGES = ("before_claim", "between_claim_and_post", "during_post", "after_answer")
FINAL = (
    OrderStatus.FILLED,
    OrderStatus.REJECTED,
    OrderStatus.RISK_REJECTED,
    OrderStatus.CANCELLED,
)
HELD_AFTER_S = 10.0
ORDERS_PER_AIMED_KILL = 6
STAGE_WAIT_S = 20.0
LOCK_HOLD_S = 1.5
ORDERS_PATH = "/v2/orders"


@dataclass(frozen=True)
class ChaosSpec:
    orders: int = 200
    kills: int = 5
    symbols: int = 20
    feed_seconds: float = 120.0
    settle_timeout: float = 600.0
    workers: int = 2
    seed: int = 3


@dataclass
class Kill:
    at: datetime
    cluster: str
    aimed: str
    landed: str = ""
    target: int | None = None
    open_at_kill: set[int] = field(default_factory=set)


class _Orders:
    """Writes the benchmark's queued orders, at most ``budget``, from any thread."""

    def __init__(self, pool: Pool, prices: dict[str, Decimal], budget: int, rng: random.Random):
        self.pool = pool
        self.prices = prices
        self.symbols = sorted(prices)
        self.budget = budget
        self.rng = rng
        self.made = 0
        self._lock = threading.Lock()

    def make(self, count: int = 1) -> int:
        with self._lock:
            count = min(count, self.budget - self.made)
            numbers = range(self.made, self.made + count)
            self.made += count
            picks = [(self.rng.choice(self.symbols), self.rng.randint(1, 5)) for _ in numbers]
        if not count:
            return 0
        now = timezone.now()
        with transaction.atomic():
            orders = [
                queued_order(
                    pool=self.pool,
                    entity_id=symbol,
                    action="act",
                    side="buy",
                    reason="entry",
                    quantity=Decimal(units),
                    estimated_value=self.prices[symbol],
                    reference=f"chaos:{n}",
                    now=now,
                )
                for n, (symbol, units) in zip(numbers, picks, strict=True)
            ]
            for order in orders:
                order.save()
            record_order_events(orders, OrderEventKind.QUEUED, now)
            ids = [order.pk for order in orders]
            transaction.on_commit(lambda: enqueue_orders(ids))
        return count


class _PoolLock:
    """Holds the pool row ``FOR NO KEY UPDATE`` in a thread of its own until released: the
    workers' claims and stores (``FOR UPDATE``) wait for it, new orders (whose foreign key
    takes ``FOR KEY SHARE``) do not."""

    def __init__(self, pool_id: int) -> None:
        self.pool_id = pool_id
        self.locked = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._hold, name="bench-pool-lock", daemon=True)

    def _hold(self) -> None:
        try:
            with transaction.atomic():
                Pool.objects.select_for_update(no_key=True).get(pk=self.pool_id)
                self.locked.set()
                self.release.wait(timeout=60)
        finally:
            self.locked.set()
            connections.close_all()

    def __enter__(self) -> _PoolLock:
        self.thread.start()
        self.locked.wait(timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.thread.join(timeout=30)


class _Chaos:
    def __init__(self, spec: ChaosSpec, progress: Callable[[str], None]) -> None:
        from tests.broker_server import FakeBroker

        self.spec = spec
        self.progress = progress
        self.rng = random.Random(spec.seed)
        now = timezone.now()
        self.pool, self.prices = build_http_pool("chaos", spec.symbols, now, self.rng)
        setup_schedules()
        self.broker = FakeBroker(self.prices, cash="1000000000000", rate_limit=None).start()
        self.orders = _Orders(self.pool, self.prices, spec.orders, self.rng)
        self.clusters: dict[str, ClusterProcess] = {}
        self.incarnations: list[ClusterProcess] = []
        self.generation = Counter()
        self.kills: list[Kill] = []
        self._hook_lock = threading.Lock()
        self._armed: dict | None = None

    # Clusters ------------------------------------------------------------------------------

    def start_cluster(self, name: str, wait: bool = True) -> None:
        self.generation[name] += 1
        label = f"{name}{self.generation[name]}"
        url = self.broker.listen(label)
        env = cluster_env(url, self.broker.key_id, self.broker.secret_key, self.spec.workers)
        cluster = ClusterProcess(label, env)
        self.incarnations.append(cluster)
        self.clusters[name] = cluster.start(wait=wait)

    def stop(self) -> None:
        for cluster in self.incarnations:
            cluster.stop()
        self.broker.on_request(None)
        self.broker.stop()

    # The broker's hook: aims a kill at the POST of one cluster -------------------------------

    def _hook(self, stage: str, exchange) -> None:
        with self._hook_lock:
            armed = self._armed
            if (
                armed is None
                or exchange.label != armed["label"]
                or exchange.method != "POST"
                or exchange.path != ORDERS_PATH
                or (armed.get("exchange") not in (None, exchange))
            ):
                return
            armed["exchange"] = exchange
        if armed["stage"] == "during_post" and stage == "received":
            armed["hit"].set()
            armed["release"].wait(timeout=STAGE_WAIT_S)
        elif armed["stage"] == "after_answer" and stage == "received":
            armed["lock"].__enter__()
        elif armed["stage"] == "after_answer" and stage == "answered":
            armed["hit"].set()

    def _arm(self, stage: str, label: str) -> dict:
        armed = {
            "stage": stage,
            "label": label,
            "hit": threading.Event(),
            "release": threading.Event(),
            "lock": _PoolLock(self.pool.pk),
            "exchange": None,
        }
        with self._hook_lock:
            self._armed = armed
        return armed

    def _disarm(self) -> None:
        with self._hook_lock:
            self._armed = None

    # One kill --------------------------------------------------------------------------------

    def _open_orders(self) -> set[int]:
        return set(
            Order.objects.filter(pool=self.pool)
            .exclude(status__in=FINAL)
            .values_list("id", flat=True)
        )

    def _id_of(self, client_order_id: str) -> int | None:
        prefix = idempotency_key_prefix(client_order_id)
        if prefix is None:
            return None
        return (
            Order.objects.filter(idempotency_key__startswith=prefix)
            .values_list("id", flat=True)
            .first()
        )

    def _keep_account_fresh(self) -> None:
        """Put the broker's account in the cache the clusters' claims read it from
        (``execution.worker.account_cache_key``), read here through the broker's own URL."""
        from django.core.cache import cache

        from execution.adapters import AlpacaHttpAdapter
        from execution.worker import ACCOUNT_CACHE_SECONDS, account_cache_key

        adapter = AlpacaHttpAdapter(self.broker.url, self.broker.key_id, self.broker.secret_key)
        cache.set(account_cache_key(self.broker.key_id), adapter.account(), ACCOUNT_CACHE_SECONDS)

    def kill(self, name: str, stage: str) -> Kill:
        cluster = self.clusters[name]
        label = cluster.label
        kill = Kill(at=timezone.now(), cluster=label, aimed=stage)
        if stage == "before_claim":
            with _PoolLock(self.pool.pk):
                self.orders.make(2 * self.spec.workers)
                time.sleep(LOCK_HOLD_S)
                kill.open_at_kill = self._open_orders()
                kill.at = timezone.now()
                cluster.kill()
                kill.landed = stage
        elif stage == "between_claim_and_post":
            self.broker.pause_listener(label)
            deadline = time.monotonic() + STAGE_WAIT_S
            unseen_since: dict[int, float] = {}
            while time.monotonic() < deadline and kill.target is None:
                # The claim reads the broker account first (through the paused listener too):
                # kept fresh in the shared cache, so the claim goes ahead and its POST waits.
                self._keep_account_fresh()
                seen = {e.client_order_id for e in self.broker.exchanges}
                for pk, key in Order.objects.filter(
                    pool=self.pool, status=OrderStatus.SUBMITTING
                ).values_list("id", "idempotency_key"):
                    if client_order_id_for(key) not in seen:
                        first = unseen_since.setdefault(pk, time.monotonic())
                        if time.monotonic() - first >= 0.5:
                            kill.target = pk
                if kill.target is None:
                    self.orders.make(1)
                    time.sleep(0.1)
            kill.open_at_kill = self._open_orders()
            kill.at = timezone.now()
            cluster.kill()
            self.broker.close_listener(label)
            kill.landed = stage if kill.target is not None else "random"
        else:
            armed = self._arm(stage, label)
            deadline = time.monotonic() + STAGE_WAIT_S
            while not armed["hit"].wait(timeout=0.2) and time.monotonic() < deadline:
                self.orders.make(1)
            if armed["hit"].is_set() and stage == "after_answer":
                time.sleep(0.3)  # the worker has the answer and waits for the pool row
            kill.open_at_kill = self._open_orders()
            kill.at = timezone.now()
            cluster.kill()
            self._disarm()
            if armed["exchange"] is not None and armed["hit"].is_set():
                kill.target = self._id_of(armed["exchange"].client_order_id)
                kill.landed = stage
                if stage == "after_answer":
                    landed = Order.objects.filter(
                        pk=kill.target, status=OrderStatus.SUBMITTING
                    ).exists()
                    kill.landed = stage if landed else "random"
            else:
                kill.landed = "random"
            armed["release"].set()
            if armed["lock"].thread.is_alive() or armed["lock"].locked.is_set():
                armed["lock"].__exit__(None, None, None)
        self.broker.close_listener(label)
        self.kills.append(kill)
        return kill

    # The run ---------------------------------------------------------------------------------

    def feed(self, stop: threading.Event) -> None:
        """Write the orders at a steady rate over ``feed_seconds``, leaving
        ``ORDERS_PER_AIMED_KILL`` per kill for the kills to draw on while they wait for their
        stage."""
        share = max(0, self.spec.orders - ORDERS_PER_AIMED_KILL * self.spec.kills)
        try:
            interval = self.spec.feed_seconds / max(share, 1)
            while not stop.is_set() and self.orders.made < share:
                self.orders.make(1)
                stop.wait(interval)
        finally:
            connections.close_all()

    def run(self) -> dict:
        spec = self.spec
        self.broker.on_request(self._hook)
        self.start_cluster("A")
        self.start_cluster("B")
        self.progress(f"two clusters running ({spec.workers} workers each); feeding orders")
        stop = threading.Event()
        feeder = threading.Thread(target=self.feed, args=(stop,), name="bench-feed", daemon=True)
        started = time.monotonic()
        feeder.start()
        try:
            gap = spec.feed_seconds / (spec.kills + 1)
            for n in range(spec.kills):
                time.sleep(max(0.0, started + gap * (n + 1) - time.monotonic()))
                name = self.rng.choice(sorted(self.clusters))
                stage = STAGES[n % len(STAGES)]
                kill = self.kill(name, stage)
                self.progress(
                    f"kill {n + 1}/{spec.kills}: {kill.cluster} aimed at {stage}, landed "
                    f"{kill.landed}, {len(kill.open_at_kill)} order(s) open; "
                    f"{self.orders.made} written"
                )
                if kill.landed == "random":
                    self.progress(f"  {kill.cluster}'s last lines:\n{self.clusters[name].tail(8)}")
                time.sleep(1.0)
                self.start_cluster(name)
            feeder.join(timeout=spec.feed_seconds + 60)
        finally:
            stop.set()
            feeder.join(timeout=30)
        # Orders the aimed stages did not draw from the budget.
        while self.orders.made < spec.orders:
            self.orders.make(spec.orders - self.orders.made)
        self.progress(f"{self.orders.made} orders written; settling")
        settled = self.settle()
        return self.compare(settled)

    def settle(self) -> bool:
        deadline = time.monotonic() + self.spec.settle_timeout
        last = 0.0
        while time.monotonic() < deadline:
            close_old_connections()
            open_orders = Counter(
                Order.objects.filter(pool=self.pool)
                .exclude(status__in=FINAL)
                .values_list("status", flat=True)
            )
            if not open_orders:
                return True
            if time.monotonic() - last >= 15:
                self.progress(f"waiting for {dict(open_orders)}")
                last = time.monotonic()
            time.sleep(1)
        return False

    def compare(self, settled: bool) -> dict:
        rows = list(
            Order.objects.filter(pool=self.pool).values(
                "id", "idempotency_key", "status", "filled_quantity", "updated_at", "entity_id"
            )
        )
        for row in rows:
            # The broker knows an order by the client order id derived from its key.
            row["client_order_id"] = client_order_id_for(row["idempotency_key"])
        keys = {row["client_order_id"]: row for row in rows}
        broker_orders = self.broker.orders
        executions = self.broker.executions()
        duplicates = sum(n - 1 for n in executions.values() if n > 1)
        phantoms = [key for key in broker_orders if key not in keys]
        lost = [row["id"] for row in rows if row["client_order_id"] not in broker_orders]
        unsettled = [row["id"] for row in rows if row["status"] not in FINAL]
        mismatched = [
            row["id"]
            for row in rows
            if row["client_order_id"] in broker_orders
            and (
                row["status"] != broker_orders[row["client_order_id"]]["status"]
                or row["filled_quantity"]
                != Decimal(broker_orders[row["client_order_id"]]["filled_qty"])
            )
        ]
        books = dict(
            Commitment.objects.filter(pool=self.pool, status=CommitmentStatus.OPEN).values_list(
                "entity_id", "units"
            )
        )
        held = self.broker.positions
        positions = sorted(
            symbol
            for symbol in set(books) | set(held)
            if books.get(symbol, Decimal(0)) != held.get(symbol, Decimal(0))
        )
        settle_times, stages = [], Counter()
        for kill in self.kills:
            stages[kill.landed] += 1
            for pk in kill.open_at_kill | ({kill.target} if kill.target else set()):
                row = next((r for r in rows if r["id"] == pk), None)
                if row is None:
                    continue
                if row["status"] not in FINAL:
                    settle_times.append(float("inf"))
                    continue
                took = (row["updated_at"] - kill.at).total_seconds()
                if took >= HELD_AFTER_S or pk == kill.target:
                    settle_times.append(took)
        max_settle = max(settle_times) if settle_times else 0.0
        return {
            "benchmark": "chaos",
            "orders": len(rows),
            "kills": len(self.kills),
            "duplicates": duplicates,
            "lost": len(lost) + len(phantoms),
            "unsettled": len(unsettled),
            "disagreeing": len(positions) + len(mismatched),
            "max_settle_s": None if max_settle == float("inf") else round(max_settle, 1),
            "held_by_killed": len(settle_times),
            "stages": dict(stages),
            "statuses": dict(Counter(row["status"] for row in rows)),
            "broker_posts": self.broker.count("POST", ORDERS_PATH),
            "settled_in_time": settled,
        }


def bench_chaos(spec: ChaosSpec, progress: Callable[[str], None]) -> dict:
    """Kill one of two real clusters ``spec.kills`` times while ``spec.orders`` orders flow to
    the test broker, let the engine's schedules settle, and compare broker and books; see the
    module docstring. Seconds are wall-clock; ``max_settle_s`` is the longest time from a kill
    to the settling of an order the killed cluster held (None: one never settled)."""
    require_postgres_and_redis()
    flush_redis()
    chaos = _Chaos(spec, progress)
    try:
        return chaos.run()
    finally:
        chaos.stop()
        flush_redis()
        connections.close_all()
