"""django-q2 task entry points: every pool runs, one pool's failure is logged and contained."""

from __future__ import annotations

import logging

from decisions.tasks import decision_cycle, for_each_pool, performance_loop
from portfolio.models import Pool
from tests import factories


def test_a_failing_pool_does_not_stop_the_others(db, session_now, caplog):
    good = factories.make_pool(now=session_now, name="good")
    broken = factories.make_pool(now=session_now, name="broken")
    # A tier name with no risk_tier_configs row: this pool's loop raises.
    Pool.objects.filter(pk=broken.pk).update(risk_tier="missing")

    def run(pool_id: int) -> str:
        from portfolio.selectors import tier_params

        return tier_params(Pool.objects.get(pk=pool_id).risk_tier).name

    with caplog.at_level(logging.ERROR):
        lines = for_each_pool("test loop", run)

    assert lines == ["broken: failed (see the log)", f"good: {good.risk_tier}"]
    assert "test loop failed for pool broken" in caplog.text


def test_scheduled_entry_points_run_for_every_pool(db, session_now):
    factories.make_pool(now=session_now, name="alpha")
    factories.make_pool(now=session_now, name="beta")

    assert [line.split(":")[0] for line in decision_cycle()] == ["alpha", "beta"]
    assert [line.split(":")[0] for line in performance_loop()] == ["alpha", "beta"]


def test_sweeper_hands_out_again_only_orders_left_queued(db, session_now):
    from datetime import timedelta

    from django_q.brokers import get_broker

    from decisions.engine import run_decision_cycle
    from execution.models import Order
    from execution.worker import sweep_queued_orders

    pool = factories.make_pool(now=session_now)
    for symbol in ("SWA", "SWB"):
        factories.add_bars(symbol, session_now, sector=symbol)
        factories.make_recommendation(symbol, session_now)
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    old, _fresh = Order.objects.order_by("id")
    Order.objects.filter(pk=old.pk).update(created_at=session_now - timedelta(minutes=10))
    broker = get_broker()
    broker.purge_queue()

    handed = sweep_queued_orders(timedelta(minutes=2), now=session_now)

    assert handed == [old.pk]
    assert broker.queue_size() == 1
    broker.purge_queue()


def test_orders_are_handed_out_in_batches_and_each_task_runs(db, session_now, settings):
    from django_q.brokers import get_broker

    from decisions.engine import run_decision_cycle
    from execution import tasks
    from execution.dispatch import enqueue_orders
    from execution.models import Order
    from portfolio.models import EngineConfig
    from tests.api.conftest import queued_tasks
    from tests.broker_server import FakeBroker

    symbols = [f"TB{i}" for i in range(5)]
    broker = FakeBroker(prices=dict.fromkeys(symbols, "100")).start()
    broker.configure(settings, timeout=5)
    pool = factories.make_pool(now=session_now)
    Pool.objects.filter(pk=pool.pk).update(adapter="http")
    EngineConfig.objects.filter(pool=pool).update(max_active_commitments=100)
    for symbol in symbols:
        factories.add_bars(symbol, session_now, sector=symbol)
        factories.make_recommendation(symbol, session_now, confidence="0.80")
    run_decision_cycle(pool.pk, session_now, dispatch=False)
    ids = list(Order.objects.filter(pool=pool).order_by("id").values_list("id", flat=True))
    assert len(ids) == len(symbols)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    get_broker().purge_queue()

    enqueue_orders(ids)
    enqueue_orders(ids[-1:])

    handed = [(t["func"], t["args"]) for t in queued_tasks()]
    get_broker().purge_queue()
    # Five orders over two workers: a batch of three and one of two; a lone order keeps its
    # own task (as every order had before batches).
    assert handed == [
        ("execution.tasks.process_orders", (ids[:3],)),
        ("execution.tasks.process_orders", (ids[3:],)),
        ("execution.tasks.process_order", (ids[-1],)),
    ]
    try:
        assert tasks.process_orders(ids[:3]) == [f"{pk}: filled" for pk in ids[:3]]
        assert tasks.process_order(ids[3]) == "filled"
        assert tasks.process_orders(ids[3:]) == [f"{ids[3]}: filled", f"{ids[4]}: filled"]
        assert broker.count("POST", "/v2/orders") == len(ids)
    finally:
        broker.stop()
