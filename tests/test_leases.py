"""Leases on claimed orders: set on claim, renewed in flight, cleared on answer, and an expired
lease settled at once by a lookup (docs/decisions.md, "Leases: recovery in seconds").

The broker is the real HTTP test server (tests/broker_server.py); a worker "killed" after its
claim is a claim that is never followed by a submit or an answer.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import Schedule

from decisions.engine import run_decision_cycle
from decisions.schedules import RETIRED_SCHEDULES, SCHEDULES, setup_schedules
from execution import worker
from execution.adapters import AlpacaHttpAdapter
from execution.keys import client_order_id_for
from execution.models import Order, OrderStatus
from execution.worker import (
    LEASE_SECONDS,
    SWEEP_QUEUED_AFTER,
    ProcessResult,
    build_adapter,
    claim_order,
    process_order,
    reconcile_order,
    record_response,
    settle_expired_leases,
    sweep_queued_orders,
)
from portfolio.models import Commitment, EngineConfig, Pool
from tests import factories
from tests.broker_server import FakeBroker

SYMBOL = "LEASE"
DEAD = "dead-host:4242:deadbeef"


@pytest.fixture
def broker(settings):
    with FakeBroker(prices={SYMBOL: "50.00"}) as server:
        yield server.configure(settings, timeout=5)


def _queued_orders(now, symbols=(SYMBOL,)) -> list[Order]:
    pool = factories.make_pool(now=now)
    Pool.objects.filter(pk=pool.pk).update(adapter="http")
    EngineConfig.objects.filter(pool=pool).update(max_active_commitments=100)
    for i, symbol in enumerate(symbols):
        factories.add_bars(symbol, now, sector=f"S{i}")
        factories.make_recommendation(symbol, now, confidence="0.80")
    run_decision_cycle(pool.pk, now, dispatch=False)
    return list(Order.objects.filter(pool=pool).order_by("id"))


@pytest.fixture
def queued_order(db, session_now, broker) -> Order:
    (order,) = _queued_orders(session_now)
    return order


def _posts(broker, client_order_id: str) -> int:
    return sum(
        1
        for r in broker.received
        if r.method == "POST" and r.body.get("client_order_id") == client_order_id
    )


def _lookups(broker) -> int:
    return broker.count("GET", "/v2/orders:by_client_order_id")


def _claim_and_die(order: Order, now) -> Order:
    """A worker that claimed the order and was killed before storing any answer."""
    claimed = claim_order(order.pk, now, DEAD)
    assert not isinstance(claimed, ProcessResult), claimed
    return Order.objects.get(pk=order.pk)


class _ObservingAdapter:
    """The real HTTP adapter, noting the order's row as the submit starts."""

    name = "http"

    def __init__(self, inner: AlpacaHttpAdapter, order_id: int) -> None:
        self.inner = inner
        self.order_id = order_id
        self.seen: dict = {}

    def submit(self, request):
        self.seen = Order.objects.values("status", "lease_owner", "lease_expires_at").get(
            pk=self.order_id
        )
        return self.inner.submit(request)

    def lookup(self, client_order_id):
        return self.inner.lookup(client_order_id)

    def account(self):
        return self.inner.account()


# --- the lease on the worker's own path -------------------------------------------------------


def test_claim_sets_the_lease_and_the_answer_clears_it(queued_order, session_now):
    adapter = _ObservingAdapter(build_adapter(queued_order.pool, session_now), queued_order.pk)
    before = timezone.now()

    assert process_order(queued_order.pk, session_now, adapter=adapter).status == "filled"

    seen = adapter.seen
    assert seen["status"] == OrderStatus.SUBMITTING
    host, pid, tag = seen["lease_owner"].split(":")
    assert host and pid.isdigit() and len(tag) == 8
    expires = seen["lease_expires_at"]
    assert before + timedelta(seconds=LEASE_SECONDS) <= expires
    assert expires <= timezone.now() + timedelta(seconds=LEASE_SECONDS)
    order = Order.objects.get(pk=queued_order.pk)
    assert order.lease_owner == "" and order.lease_expires_at is None


def test_a_risk_rejected_order_holds_no_lease(queued_order, session_now):
    Pool.objects.filter(pk=queued_order.pool_id).update(halted=True)

    assert process_order(queued_order.pk, session_now).status == "risk_rejected"

    order = Order.objects.get(pk=queued_order.pk)
    assert order.lease_owner == "" and order.lease_expires_at is None


def _watch_leases(order_id: int, stop: threading.Event, seen: list) -> threading.Thread:
    """Sample the order's lease from another connection while the submit is in flight."""

    def run():
        try:
            while not stop.is_set():
                row = Order.objects.values("status", "lease_expires_at").get(pk=order_id)
                if row["status"] == OrderStatus.SUBMITTING and row["lease_expires_at"]:
                    seen.append((timezone.now(), row["lease_expires_at"]))
                time.sleep(0.05)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _slow_submit(broker, order: Order, seconds: float) -> tuple[list, object]:
    broker.inject("delay", seconds=seconds, method="POST", path="/v2/orders")
    seen: list = []
    stop = threading.Event()
    watcher = _watch_leases(order.pk, stop, seen)
    try:
        result = process_order(order.pk)
    finally:
        stop.set()
        watcher.join(timeout=5)
    return seen, result


@pytest.mark.django_db(transaction=True)
def test_the_lease_moves_forward_while_a_slow_submit_is_in_flight(
    source_tiers, broker, session_now, monkeypatch, settings
):
    # A lease with room to spare (3 s, renewed every 0.25 s) so that a busy machine delaying a
    # renewal by a second cannot make the test fail; what is checked is that it moves.
    monkeypatch.setattr(worker, "LEASE_SECONDS", 3.0)
    monkeypatch.setattr(worker, "LEASE_RENEW_SECONDS", 0.25)
    settings.ORDER_TASK_TIMEOUT = 60
    (order,) = _queued_orders(session_now)

    seen, result = _slow_submit(broker, order, seconds=2.0)

    assert result.status == "filled"
    leases = [expires for _, expires in seen]
    assert len(set(leases)) >= 3, leases  # claimed, then renewed
    assert leases == sorted(leases)
    # Never let it lapse: each sample finds the lease ahead of the clock.
    assert all(expires > at for at, expires in seen)
    submitted = Order.objects.get(pk=order.pk).submitted_at
    # Renewed beyond the first lease (claim + 3 s) by a renewal a second or more into the submit.
    assert max(leases) >= submitted + timedelta(seconds=4)
    done = Order.objects.get(pk=order.pk)
    assert done.lease_owner == "" and done.lease_expires_at is None
    assert _posts(broker, client_order_id_for(order.idempotency_key)) == 1


@pytest.mark.django_db(transaction=True)
def test_the_lease_is_never_renewed_beyond_the_task_timeout(
    source_tiers, broker, session_now, monkeypatch, settings
):
    monkeypatch.setattr(worker, "LEASE_SECONDS", 0.6)
    monkeypatch.setattr(worker, "LEASE_RENEW_SECONDS", 0.2)
    settings.ORDER_TASK_TIMEOUT = 1
    (order,) = _queued_orders(session_now)
    started = timezone.now()

    seen, result = _slow_submit(broker, order, seconds=2.0)

    leases = [expires for _, expires in seen]
    assert len(set(leases)) >= 2, leases  # renewed at least once, up to the cap
    claimed = Order.objects.get(pk=order.pk).submitted_at
    assert started <= claimed
    cap = claimed + timedelta(seconds=1.5)  # the claim comes a few ms after ``now``
    assert max(leases) <= cap
    # Past the cap the lease lapses though the submit is still in flight.
    assert any(expires <= at for at, expires in seen)
    # Nobody settled it meanwhile, so the worker's own answer is still applied.
    assert result.status == "filled"


# --- the settler ------------------------------------------------------------------------------


def test_an_order_killed_before_the_post_is_queued_again_and_sent_once(
    queued_order, broker, session_now
):
    claimed = _claim_and_die(queued_order, session_now)
    assert claimed.status == OrderStatus.SUBMITTING and claimed.lease_owner == DEAD
    get_broker().purge_queue()

    # While the lease runs the order is left alone: no lookup, no staleness rule.
    assert settle_expired_leases() == []
    assert reconcile_order(queued_order.pk).detail == f"lease held by {DEAD}"
    assert _lookups(broker) == 0

    expired = claimed.lease_expires_at + timedelta(seconds=1)
    (settled,) = settle_expired_leases(expired)

    assert settled.status == OrderStatus.QUEUED
    order = Order.objects.get(pk=queued_order.pk)
    assert order.status == OrderStatus.QUEUED
    assert order.lease_owner == "" and order.lease_expires_at is None
    assert order.handed_out_at == expired
    assert get_broker().queue_size() == 1  # handed to the task queue at once
    get_broker().purge_queue()
    assert _lookups(broker) == 1 and _posts(broker, client_order_id_for(order.idempotency_key)) == 0

    assert process_order(queued_order.pk, session_now).status == "filled"
    assert settle_expired_leases(expired + timedelta(minutes=1)) == []
    assert _posts(broker, client_order_id_for(order.idempotency_key)) == 1
    assert set(broker.orders) == {client_order_id_for(order.idempotency_key)}
    assert Commitment.objects.get().units == order.quantity


def test_an_order_killed_after_the_broker_accepted_it_is_booked_from_the_lookup(
    queued_order, broker, session_now
):
    claimed = _claim_and_die(queued_order, session_now)
    # The dead worker's POST reached the broker; its answer was never stored.
    adapter = build_adapter(claimed.pool, session_now)
    from execution.adapters import OrderRequest

    adapter.submit(
        OrderRequest(
            client_order_id_for(claimed.idempotency_key), SYMBOL, claimed.side, claimed.quantity
        )
    )
    expired = claimed.lease_expires_at + timedelta(seconds=1)

    (settled,) = settle_expired_leases(expired)

    assert settled.status == "filled"
    order = Order.objects.get(pk=queued_order.pk)
    assert order.lease_owner == "" and order.lease_expires_at is None
    assert settle_expired_leases(expired + timedelta(minutes=1)) == []
    assert reconcile_order(queued_order.pk, expired).detail == "nothing to reconcile"
    assert process_order(queued_order.pk, session_now).detail == "not claimable"
    assert Commitment.objects.get().units == order.quantity
    assert _posts(broker, client_order_id_for(order.idempotency_key)) == 1


def test_a_failed_lookup_leaves_the_order_submitting_for_the_next_run(
    queued_order, broker, session_now
):
    claimed = _claim_and_die(queued_order, session_now)
    expired = claimed.lease_expires_at + timedelta(seconds=1)
    broker.inject(
        "respond", times=2, status=503, method="GET", path="/v2/orders:by_client_order_id"
    )

    (first,) = settle_expired_leases(expired)
    (second,) = settle_expired_leases(expired)

    assert first.status == second.status == OrderStatus.SUBMITTING
    assert first.detail.startswith("lookup failed")
    assert second.status == "submitting"  # the broker is not asked to take it blindly
    assert _posts(broker, client_order_id_for(claimed.idempotency_key)) == 0
    (third,) = settle_expired_leases(expired + timedelta(seconds=1))
    assert third.status == OrderStatus.QUEUED


def test_reconciliation_settles_an_expired_lease_without_the_staleness_wait(
    queued_order, broker, session_now
):
    claimed = _claim_and_die(queued_order, session_now)
    expired = claimed.lease_expires_at + timedelta(seconds=1)

    assert reconcile_order(queued_order.pk, expired).status == OrderStatus.QUEUED


def test_an_order_claimed_before_leases_keeps_the_staleness_rule(queued_order, broker, session_now):
    claimed = _claim_and_die(queued_order, session_now)
    Order.objects.filter(pk=claimed.pk).update(lease_owner="", lease_expires_at=None)
    assert settle_expired_leases(timezone.now() + timedelta(minutes=1)) == []
    assert worker.orders_to_reconcile(claimed.submitted_at + timedelta(minutes=1)) == []
    stale = claimed.submitted_at + timedelta(minutes=3)
    assert worker.orders_to_reconcile(stale) == [claimed.pk]
    assert reconcile_order(claimed.pk, stale).status == OrderStatus.QUEUED


def test_an_answer_after_the_lease_was_lost_is_applied_only_when_the_broker_holds_it(
    queued_order, broker, session_now
):
    claimed = _claim_and_die(queued_order, session_now)
    expired = claimed.lease_expires_at + timedelta(seconds=1)
    (settled,) = settle_expired_leases(expired)
    assert settled.status == OrderStatus.QUEUED
    adapter = build_adapter(claimed.pool, session_now)
    from execution.adapters import ExecutionResponse, OrderRequest

    # The "dead" worker was only cut off: its ambiguous answer changes nothing ...
    late = record_response(
        claimed.pk,
        ExecutionResponse.unknown("timeout", {}),
        session_now,
        expected=OrderStatus.SUBMITTING,
        lease_owner=DEAD,
    )
    assert late.status == OrderStatus.QUEUED and late.detail.startswith("lease lost")
    # ... but a fill it brings back is the broker's word: booked once.
    answer = adapter.submit(
        OrderRequest(
            client_order_id_for(claimed.idempotency_key), SYMBOL, claimed.side, claimed.quantity
        )
    )
    filled = record_response(
        claimed.pk, answer, session_now, expected=OrderStatus.SUBMITTING, lease_owner=DEAD
    )
    assert filled.status == "filled"
    assert process_order(claimed.pk, session_now).detail == "not claimable"
    assert Commitment.objects.get().units == claimed.quantity


# --- the sweeper ------------------------------------------------------------------------------


def test_the_sweeper_hands_out_a_lost_order_once_per_interval(queued_order, session_now):
    created = queued_order.created_at
    get_broker().purge_queue()

    assert sweep_queued_orders(SWEEP_QUEUED_AFTER, created + SWEEP_QUEUED_AFTER / 2) == []
    swept_at = created + SWEEP_QUEUED_AFTER
    assert sweep_queued_orders(SWEEP_QUEUED_AFTER, swept_at) == [queued_order.pk]
    assert Order.objects.get(pk=queued_order.pk).handed_out_at == swept_at
    # Just handed out: its new task gets its chance before another one is sent.
    assert sweep_queued_orders(SWEEP_QUEUED_AFTER, swept_at + timedelta(seconds=1)) == []
    again = swept_at + SWEEP_QUEUED_AFTER
    assert sweep_queued_orders(SWEEP_QUEUED_AFTER, again) == [queued_order.pk]
    assert get_broker().queue_size() == 2
    get_broker().purge_queue()


# --- concurrency (PostgreSQL) -----------------------------------------------------------------


def _in_threads(target, count):
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []
    results: list = [None] * count

    def run(i):
        try:
            barrier.wait(timeout=10)
            results[i] = target()
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_settlers_at_once_settle_each_order_once(source_tiers, broker, session_now):
    symbols = [f"LS{i}" for i in range(6)]
    for symbol in symbols:
        broker.set_price(symbol, "20.00")
    orders = _queued_orders(session_now, symbols)
    assert len(orders) == len(symbols)
    claimed = [_claim_and_die(order, session_now) for order in orders]
    # Half of them reached the broker before their worker died.
    adapter = build_adapter(claimed[0].pool, session_now)
    from execution.adapters import OrderRequest

    for order in claimed[::2]:
        adapter.submit(
            OrderRequest(
                client_order_id_for(order.idempotency_key), order.entity_id, "buy", order.quantity
            )
        )
    expired = max(o.lease_expires_at for o in claimed) + timedelta(seconds=1)
    get_broker().purge_queue()

    first, second = _in_threads(lambda: settle_expired_leases(expired), 2)

    settled = [r.order_id for r in first + second]
    assert sorted(settled) == sorted(o.pk for o in orders)  # each once, by one settler
    assert _lookups(broker) == len(orders)  # no order looked up twice
    statuses = dict(Order.objects.values_list("id", "status"))
    assert {statuses[o.pk] for o in claimed[::2]} == {"filled"}
    assert {statuses[o.pk] for o in claimed[1::2]} == {"queued"}
    assert Commitment.objects.count() == len(claimed[::2])
    assert get_broker().queue_size() == len(claimed[1::2])
    get_broker().purge_queue()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_sweepers_at_once_hand_each_order_out_once(source_tiers, broker, session_now):
    orders = _queued_orders(session_now, [f"SW{i}" for i in range(6)])
    later = max(o.created_at for o in orders) + SWEEP_QUEUED_AFTER
    get_broker().purge_queue()

    first, second = _in_threads(lambda: sweep_queued_orders(SWEEP_QUEUED_AFTER, later), 2)

    assert sorted(first + second) == sorted(o.pk for o in orders)
    # Each sweeper hands its orders out in batches: every order is in exactly one task.
    assert sorted(_handed_out()) == sorted(o.pk for o in orders)
    get_broker().purge_queue()


def _handed_out() -> list[int]:
    """The order ids of the worker tasks waiting in the queue."""
    from tests.api.conftest import queued_tasks

    ids = []
    for task in queued_tasks():
        (arg,) = task["args"]
        ids += arg if task["func"] == "execution.tasks.process_orders" else [arg]
    return ids


# --- the schedules ----------------------------------------------------------------------------


def test_the_recovery_runs_every_thirty_seconds_from_two_offset_schedules(db):
    Schedule.objects.create(
        name=RETIRED_SCHEDULES[0],
        func="execution.tasks.sweep_orders",
        schedule_type=Schedule.MINUTES,
        minutes=2,
    )

    setup_schedules()

    assert not Schedule.objects.filter(name__in=RETIRED_SCHEDULES).exists()
    recovery = {s.name: s for s in Schedule.objects.filter(func="execution.tasks.recover_orders")}
    assert set(recovery) == {"execution: order recovery (a)", "execution: order recovery (b)"}
    a = recovery["execution: order recovery (a)"]
    b = recovery["execution: order recovery (b)"]
    assert a.schedule_type == b.schedule_type == Schedule.MINUTES and a.minutes == b.minutes == 1
    assert (a.next_run.second, b.next_run.second) == (0, 30)
    assert b.next_run - a.next_run == timedelta(seconds=30)
    # django-q2 moves a minute schedule by whole minutes: the offset holds run after run.
    runs = sorted(
        [a.calculate_next_run(a.next_run + timedelta(minutes=k)) for k in range(3)]
        + [b.calculate_next_run(b.next_run + timedelta(minutes=k)) for k in range(3)]
    )
    assert {later - earlier for earlier, later in zip(runs, runs[1:], strict=False)} == {
        timedelta(seconds=30)
    }


def test_setup_schedules_puts_a_moved_recovery_schedule_back_on_its_second(db):
    setup_schedules()
    name = "execution: order recovery (b)"
    moved = Schedule.objects.get(name=name).next_run + timedelta(seconds=7)
    Schedule.objects.filter(name=name).update(next_run=moved)

    outcome = dict(setup_schedules())

    assert outcome[name] == "updated"
    assert outcome["execution: order recovery (a)"] == "unchanged"
    assert Schedule.objects.get(name=name).next_run.second == 30
    assert [s.name for s in SCHEDULES].count(name) == 1


def test_worst_case_from_a_death_to_its_settlement_is_under_ninety_seconds():
    """The arithmetic of docs/decisions.md, on the constants the code runs with."""
    scheduler_wake = 31  # django-q2's guard: 60 cycles of 0.5 s plus its own work
    task_start = 30  # allowance for the recovery task to leave the queue
    lookup = 10  # EXECUTION_API_TIMEOUT's default read timeout
    assert worker.LEASE_SECONDS + scheduler_wake + task_start + lookup < 90
    assert SWEEP_QUEUED_AFTER.total_seconds() + scheduler_wake + task_start < 90
    assert worker.LEASE_SECONDS >= 3 * worker.LEASE_RENEW_SECONDS
