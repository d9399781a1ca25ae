"""The worker against the broker's account and rate limit, over HTTP (tests/broker_server.py):
the account gate before every submit, the buying power a batch uses up, a 429 that queues the
order again for later, and an entity with an unsettled order taking no new one."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from decisions.engine import run_decision_cycle
from decisions.models import DecisionRecord
from execution.dispatch import queued_order
from execution.models import Order, OrderEvent, OrderStatus, RiskEvaluation
from execution.worker import (
    ShadowPoolLiveAdapter,
    build_adapter,
    process_order,
    process_orders,
    reconcile_order,
    sweep_queued_orders,
)
from portfolio.models import Commitment, Pool, PoolRiskConfig
from tests import factories
from tests.broker_server import FakeBroker

SYMBOL = "ACCT"
OTHER = "ACCU"
PRICE = Decimal("100")


@pytest.fixture
def broker(settings):
    with FakeBroker(prices={SYMBOL: str(PRICE), OTHER: str(PRICE)}, rate_limit=None) as server:
        yield server.configure(settings, timeout=1)


@pytest.fixture
def http_pool(db, session_now, broker) -> Pool:
    pool = factories.make_pool(now=session_now, cash="1000000")
    Pool.objects.filter(pk=pool.pk).update(adapter="http")
    PoolRiskConfig.objects.filter(pool=pool).update(
        max_open_commitments=100, max_sector_pct=Decimal("1")
    )
    for symbol in (SYMBOL, OTHER):
        factories.add_bars(symbol, session_now, sessions=20)
    return Pool.objects.get(pk=pool.pk)


def _queue(pool: Pool, symbol: str, now, *, quantity: str = "10", n: int = 0) -> Order:
    order = queued_order(
        pool=pool,
        entity_id=symbol,
        action="act",
        side="buy",
        reason="entry",
        quantity=Decimal(quantity),
        estimated_value=PRICE,
        reference=f"broker-test:{symbol}:{n}",
        now=now,
    )
    order.save()
    return order


def _posts(broker) -> list:
    return [r for r in broker.received if r.method == "POST"]


@pytest.mark.parametrize(
    ("account", "reason"),
    [
        ({"account_blocked": True}, "account_blocked"),
        ({"trading_blocked": True}, "trading_blocked"),
        ({"trade_suspended_by_user": True}, "trade_suspended_by_user"),
        ({"status": "ACCOUNT_UPDATED"}, "account_not_active"),
        ({"buying_power": "999"}, "insufficient_buying_power"),
    ],
)
def test_an_account_that_may_not_trade_stops_the_order_before_the_broker(
    http_pool, broker, session_now, account, reason
):
    broker.set_account(**account)
    order = _queue(http_pool, SYMBOL, session_now)

    result = process_order(order.pk, session_now)

    assert result.status == OrderStatus.RISK_REJECTED and reason in result.detail
    evaluation = RiskEvaluation.objects.get(order=order)
    assert not evaluation.passed and evaluation.reasons == [reason]
    (check,) = [c for c in evaluation.checks if c["check"] == "account"]
    assert check["reason"] == reason
    assert _posts(broker) == []
    assert broker.count("GET", "/v2/account") == 1


def test_a_batch_of_buys_uses_up_the_buying_power_in_turn(http_pool, broker, session_now):
    # Room for one order of 10 × 100, not two.
    broker.set_account(buying_power="1500")
    first = _queue(http_pool, SYMBOL, session_now)
    second = _queue(http_pool, OTHER, session_now)

    results = process_orders([first.pk, second.pk], session_now)

    assert [r.status for r in results] == [OrderStatus.FILLED, OrderStatus.RISK_REJECTED]
    assert "insufficient_buying_power" in results[1].detail
    assert [p.body["symbol"] for p in _posts(broker)] == [SYMBOL]


def test_the_account_is_read_once_for_a_few_seconds(http_pool, broker, session_now):
    orders = [_queue(http_pool, SYMBOL, session_now, quantity="1", n=n) for n in range(3)]

    for order in orders:
        assert process_order(order.pk, session_now).status == OrderStatus.FILLED

    assert broker.count("GET", "/v2/account") == 1


def test_an_unreadable_account_leaves_the_order_queued_for_the_sweeper(
    http_pool, broker, session_now
):
    broker.inject("respond", status=503, method="GET", path="/v2/account")
    order = _queue(http_pool, SYMBOL, session_now)

    result = process_order(order.pk, session_now)

    assert result.status == OrderStatus.QUEUED and "account unavailable" in result.detail
    assert Order.objects.get(pk=order.pk).status == OrderStatus.QUEUED
    assert not RiskEvaluation.objects.filter(order=order).exists()
    assert _posts(broker) == []
    # The sweeper hands it out again, and then it goes.
    later = timezone.now() + timedelta(minutes=5)
    assert order.pk in sweep_queued_orders(timedelta(seconds=20), later)
    assert process_order(order.pk, session_now).status == OrderStatus.FILLED


def test_a_429_queues_the_order_again_until_the_reset(http_pool, broker, session_now):
    broker.inject("rate_limited", method="POST", path="/v2/orders", seconds=1)
    order = _queue(http_pool, SYMBOL, session_now)

    first = process_order(order.pk, session_now)

    assert first.status == OrderStatus.QUEUED and first.detail.startswith("rate_limited")
    stored = Order.objects.get(pk=order.pk)
    assert stored.retry_not_before is not None and stored.filled_quantity == 0
    assert OrderEvent.objects.filter(order=order, kind="requeued").count() == 1
    # Not claimed, and not handed out by the sweeper, before its retry time.
    assert process_order(order.pk, session_now).detail == "not claimable"
    assert order.pk not in sweep_queued_orders(
        timedelta(0), stored.retry_not_before - timedelta(seconds=1)
    )
    assert len(_posts(broker)) == 1

    # Its retry time has come (moved here rather than waited for).
    Order.objects.filter(pk=order.pk).update(retry_not_before=timezone.now() - timedelta(seconds=1))
    from django.core.cache import cache

    cache.clear()  # the client-side limiter's hold after the 429, as if it had passed too
    assert process_order(order.pk, session_now).status == OrderStatus.FILLED
    assert len(_posts(broker)) == 2
    assert broker.executions(order.client_order_id) == 1


def test_the_gate_leaves_an_order_queued_while_its_entity_has_one_unknown(
    http_pool, broker, session_now
):
    broker.inject("accept_then_fail", status=503, method="POST", path="/v2/orders")
    unknown = _queue(http_pool, SYMBOL, session_now, n=1)
    assert process_order(unknown.pk, session_now).status == OrderStatus.UNKNOWN
    waiting = _queue(http_pool, SYMBOL, session_now, n=2)

    result = process_order(waiting.pk, session_now)

    assert result.status == OrderStatus.QUEUED and result.detail.startswith("order_unsettled")
    assert not RiskEvaluation.objects.filter(order=waiting).exists()
    assert len(_posts(broker)) == 1
    # Settled: the next claim takes it.
    assert reconcile_order(unknown.pk, session_now).status == OrderStatus.FILLED
    assert process_order(waiting.pk, session_now).status == OrderStatus.FILLED


def test_the_engine_skips_an_entity_with_an_unknown_order_until_it_is_settled(
    http_pool, broker, session_now
):
    factories.make_recommendation(SYMBOL, session_now)
    run_decision_cycle(http_pool.pk, session_now, dispatch=False)
    (first,) = Order.objects.filter(pool=http_pool)
    broker.inject("accept_then_fail", status=503, method="POST", path="/v2/orders")
    assert process_order(first.pk, session_now).status == OrderStatus.UNKNOWN
    recommendation = factories.make_recommendation(SYMBOL, session_now, action="defer")
    later = session_now + timedelta(minutes=1)

    run_decision_cycle(http_pool.pk, later, dispatch=False)

    record = DecisionRecord.objects.get(recommendation=recommendation)
    assert record.skip_reason == "order_unsettled" and not record.processed
    assert Order.objects.filter(pool=http_pool).count() == 1

    assert reconcile_order(first.pk, later).status == OrderStatus.FILLED
    run_decision_cycle(http_pool.pk, later + timedelta(minutes=1), dispatch=False)

    taken = DecisionRecord.objects.get(recommendation=recommendation, processed=True)
    assert taken.outcome == "defer"
    assert Order.objects.filter(pool=http_pool, side="sell").count() == 1


def test_a_shadow_pool_never_gets_a_live_adapter(http_pool, session_now):
    shadow = Pool(pk=10_000, name="shadow", adapter="http", shadow_of_id=http_pool.pk)

    with pytest.raises(ShadowPoolLiveAdapter):
        build_adapter(shadow, session_now)


def test_the_http_adapter_asks_the_client_side_limiter(http_pool, session_now, settings):
    assert build_adapter(http_pool, session_now).limiter is not None
    settings.EXECUTION_API_RATE_LIMIT = 0
    assert build_adapter(http_pool, session_now).limiter is None


def test_the_paper_account_is_the_pools_cash(db, session_now):
    pool = factories.make_pool(now=session_now, cash="1234")

    account = build_adapter(pool, session_now).account()

    assert account.status == "ACTIVE" and account.buying_power == Decimal("1234")
    assert not Commitment.objects.exists()


def test_an_unsettled_order_holds_back_its_own_pool_only(http_pool, broker, session_now):
    other = factories.make_pool(now=session_now, cash="1000000", name="other-pool")
    Pool.objects.filter(pk=other.pk).update(adapter="http")
    broker.inject("accept_then_fail", status=503, method="POST", path="/v2/orders")
    unknown = _queue(http_pool, SYMBOL, session_now, n=1)
    assert process_order(unknown.pk, session_now).status == OrderStatus.UNKNOWN
    waiting = _queue(http_pool, SYMBOL, session_now, n=2)
    elsewhere = _queue(Pool.objects.get(pk=other.pk), SYMBOL, session_now, n=3)

    results = process_orders([waiting.pk, elsewhere.pk], session_now)

    assert [r.status for r in results] == [OrderStatus.QUEUED, OrderStatus.FILLED]
    assert results[0].detail.startswith("order_unsettled")
